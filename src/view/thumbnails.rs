//! Thumbnail billboards with level of detail: the thumbnails the pipeline made
//! while decoding are packed into a few atlas textures, and only the points
//! nearest the camera (in view, up to a budget) are drawn as camera-facing
//! image quads — one mesh per atlas page, rebuilt when the view changes. All
//! other points stay splats, so 100k images never need 100k textures.

use std::sync::Arc;

use bevy::asset::RenderAssetUsages;
use bevy::camera::visibility::NoFrustumCulling;
use bevy::mesh::{Indices, PrimitiveTopology};
use bevy::prelude::*;
use bevy::render::render_resource::{Extent3d, TextureDimension, TextureFormat};
use bevy::window::PrimaryWindow;

use super::layout::Positions;
use super::loading::Dataset;
use super::picking::Projector;
use super::state::ViewState;
use super::tasks::Task;
use crate::decode::Thumbnail;
use crate::pipeline::Analysis;

/// Pixels a side of the thumbnails the viewer asks the pipeline for.
pub const THUMBNAIL_SIZE: u32 = 64;
/// Side of an atlas page: 32×32 thumbnails of 64 px.
const PAGE_SIZE: u32 = 2048;
/// Most billboards drawn at once.
pub const BILLBOARD_BUDGET: usize = 400;
/// Half the side of a billboard, in world units (splats are ~0.035).
pub const BILLBOARD_HALF: f32 = 0.12;
/// Below this half-size on screen (logical pixels) an image is unreadable:
/// the point stays a splat.
const MIN_BILLBOARD_PIXELS: f32 = 12.0;

pub struct ThumbnailsPlugin;

impl Plugin for ThumbnailsPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<ThumbnailsReady>()
            .init_resource::<Atlas>()
            .add_systems(
                Update,
                (pack_atlas, place_billboards)
                    .chain()
                    .after(super::layout::LayoutSystems)
                    .after(super::camera::CameraSystems),
            );
    }
}

/// True once the billboards of the current analysis are on screen (or there
/// are none to wait for): the screenshot hook waits for it.
#[derive(Resource, Default)]
pub struct ThumbnailsReady(pub bool);

/// Where thumbnail `index` lives: its page and its UV rectangle there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slot {
    pub page: usize,
    pub uv: Rect,
    /// Width / height of the thumbnail.
    pub aspect: f32,
}

/// Cells of `cell`² pixels laid out row by row on pages of `page`² pixels.
/// A thumbnail narrower or shorter than its cell is centred in it; the UV
/// rectangle covers only its pixels.
pub fn slot_of(index: usize, cell: u32, page: u32, width: u32, height: u32) -> Slot {
    let per_row = (page / cell) as usize;
    let per_page = per_row * per_row;
    let (page_index, within) = (index / per_page, index % per_page);
    let (col, row) = ((within % per_row) as u32, (within / per_row) as u32);
    let x = col * cell + (cell - width.min(cell)) / 2;
    let y = row * cell + (cell - height.min(cell)) / 2;
    let p = page as f32;
    Slot {
        page: page_index,
        uv: Rect::new(
            x as f32 / p,
            y as f32 / p,
            (x + width.min(cell)) as f32 / p,
            (y + height.min(cell)) as f32 / p,
        ),
        aspect: width.max(1) as f32 / height.max(1) as f32,
    }
}

/// Copies each thumbnail into its cell; returns the RGBA pages. A missing
/// thumbnail leaves its cell empty.
pub fn pack_pages(
    thumbnails: &[Option<Thumbnail>],
    cell: u32,
    page: u32,
) -> (Vec<Vec<u8>>, Vec<Slot>) {
    let mut pages: Vec<Vec<u8>> = Vec::new();
    let mut slots = Vec::with_capacity(thumbnails.len());
    let empty = Thumbnail {
        width: 0,
        height: 0,
        rgba: Vec::new(),
    };
    for (i, t) in thumbnails.iter().enumerate() {
        let t = t.as_ref().unwrap_or(&empty);
        let slot = slot_of(i, cell, page, t.width, t.height);
        while pages.len() <= slot.page {
            pages.push(vec![0; (page * page * 4) as usize]);
        }
        let x0 = (slot.uv.min.x * page as f32).round() as usize;
        let y0 = (slot.uv.min.y * page as f32).round() as usize;
        let (w, h) = (t.width.min(cell) as usize, t.height.min(cell) as usize);
        let dst = &mut pages[slot.page];
        for row in 0..h {
            let src = &t.rgba[row * t.width as usize * 4..][..w * 4];
            let at = ((y0 + row) * page as usize + x0) * 4;
            dst[at..at + w * 4].copy_from_slice(src);
        }
        slots.push(slot);
    }
    (pages, slots)
}

/// The atlas of the analysis shown, and one billboard mesh per page.
#[derive(Resource, Default)]
pub struct Atlas {
    /// The [`Dataset::generation`] packed.
    generation: u64,
    /// Loading and packing run in the background: 100k thumbnails are 1.6 GB.
    packing: Option<Task<Packed>>,
    slots: Vec<Slot>,
    /// Per page: its billboard mesh, its entity, whether it holds quads now.
    pages: Vec<(Handle<Mesh>, Entity, bool)>,
    /// Per point: drawn as a billboard now (picking then uses its size).
    pub billboarded: Vec<bool>,
    /// The view the billboards were last placed for.
    placed_for: Option<(Mat4, usize)>,
}

type Packed = (Vec<Vec<u8>>, Vec<Slot>);

#[allow(clippy::too_many_arguments)]
fn pack_atlas(
    mut commands: Commands,
    dataset: Res<Dataset>,
    mut atlas: ResMut<Atlas>,
    mut ready: ResMut<ThumbnailsReady>,
    mut images: ResMut<Assets<Image>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    let analysis: Option<&Arc<Analysis>> = dataset.analysis.as_ref();
    if dataset.generation != atlas.generation {
        for (_, entity, _) in atlas.pages.drain(..) {
            commands.entity(entity).despawn();
        }
        *atlas = Atlas {
            generation: dataset.generation,
            ..default()
        };
        let has_thumbnails = analysis.is_some_and(|a| a.folder.thumbnail_store.is_some());
        // Nothing to wait for without thumbnails.
        ready.0 = analysis.is_some() && !has_thumbnails;
        if let Some(a) = analysis.filter(|_| has_thumbnails) {
            let a = a.clone();
            atlas.packing = Some(Task::spawn("thumbnails", move |cancel| {
                let store = crate::cache::thumbnails::ThumbnailStore::open(
                    a.folder.thumbnail_store.as_ref().expect("checked above"),
                )?;
                let mut all = Vec::with_capacity(a.folder.images.len());
                for chunk in a.folder.images.chunks(1024) {
                    cancel.check()?;
                    let hashes: Vec<_> = chunk.iter().map(|r| r.hash).collect();
                    let mut found = store.get_many(&hashes, THUMBNAIL_SIZE)?;
                    all.extend(hashes.iter().map(|h| found.remove(h)));
                }
                Ok(pack_pages(&all, THUMBNAIL_SIZE, PAGE_SIZE))
            }));
        }
        return;
    }
    let Some(outcome) = atlas.packing.as_mut().and_then(|task| task.poll()) else {
        return;
    };
    atlas.packing = None;
    let packed = match outcome {
        Ok(packed) => packed,
        Err(err) => {
            warn!("thumbnails could not be loaded: {err}");
            ready.0 = true;
            return;
        }
    };
    let (pages, slots) = packed;
    atlas.slots = slots;
    for rgba in pages {
        let image = images.add(Image::new(
            Extent3d {
                width: PAGE_SIZE,
                height: PAGE_SIZE,
                depth_or_array_layers: 1,
            },
            TextureDimension::D2,
            rgba,
            TextureFormat::Rgba8UnormSrgb,
            RenderAssetUsages::RENDER_WORLD,
        ));
        let material = materials.add(StandardMaterial {
            base_color_texture: Some(image),
            unlit: true,
            cull_mode: None,
            alpha_mode: AlphaMode::Opaque,
            ..default()
        });
        let mesh = meshes.add(billboard_mesh(&[], &[], &[]));
        let entity = commands
            .spawn((
                Mesh3d(mesh.clone()),
                MeshMaterial3d(material),
                Transform::default(),
                Visibility::Hidden,
                // The mesh is rebuilt around the camera's view every time.
                NoFrustumCulling,
            ))
            .id();
        atlas.pages.push((mesh, entity, false));
    }
}

/// Up to `budget` points in view whose billboard would be at least
/// `min_pixels` (half-size) on screen, nearest the camera first.
pub fn choose_billboards(
    points: &[Vec3],
    projector: &Projector,
    budget: usize,
    min_pixels: f32,
    shown: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let mut in_view: Vec<(f32, usize)> = points
        .iter()
        .enumerate()
        .filter(|(i, _)| shown(*i))
        .filter_map(|(i, p)| {
            let (screen, depth) = projector.project(*p)?;
            let big_enough = projector.screen_radius(BILLBOARD_HALF, depth) >= min_pixels;
            (big_enough && projector.viewport.contains(screen)).then_some((depth, i))
        })
        .collect();
    if in_view.len() > budget {
        in_view.select_nth_unstable_by(budget, |a, b| a.0.total_cmp(&b.0));
        in_view.truncate(budget);
    }
    in_view.sort_by(|a, b| a.0.total_cmp(&b.0));
    in_view.into_iter().map(|(_, i)| i).collect()
}

fn billboard_mesh(positions: &[[f32; 3]], uvs: &[[f32; 2]], indices: &[u32]) -> Mesh {
    // An empty vertex buffer is not a valid GPU buffer: keep one degenerate
    // triangle (the entity is hidden then anyway).
    if positions.is_empty() {
        return billboard_mesh(&[[0.0; 3]; 3], &[[0.0; 2]; 3], &[0, 1, 2]);
    }
    Mesh::new(
        PrimitiveTopology::TriangleList,
        RenderAssetUsages::MAIN_WORLD | RenderAssetUsages::RENDER_WORLD,
    )
    .with_inserted_attribute(Mesh::ATTRIBUTE_POSITION, positions.to_vec())
    .with_inserted_attribute(
        Mesh::ATTRIBUTE_NORMAL,
        vec![[0.0, 0.0, 1.0]; positions.len()],
    )
    .with_inserted_attribute(Mesh::ATTRIBUTE_UV_0, uvs.to_vec())
    .with_inserted_indices(Indices::U32(indices.to_vec()))
}

#[allow(clippy::too_many_arguments)]
fn place_billboards(
    dataset: Res<Dataset>,
    positions: Res<Positions>,
    state: Res<ViewState>,
    window: Single<&Window, With<PrimaryWindow>>,
    camera: Single<(&Camera, &GlobalTransform), With<super::camera::ViewCamera>>,
    mut atlas: ResMut<Atlas>,
    mut ready: ResMut<ThumbnailsReady>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut visibility: Query<&mut Visibility>,
) {
    if atlas.pages.is_empty() {
        return;
    }
    let (cam, transform) = *camera;
    let view = transform.to_matrix();
    let key = (view, positions.current.as_ptr() as usize);
    let unchanged = atlas.placed_for == Some(key) && !positions.is_changed() && !state.is_changed();
    if unchanged {
        return;
    }
    atlas.placed_for = Some(key);
    let n = positions.current.len();
    let analysis = dataset
        .analysis
        .as_ref()
        .filter(|a| a.folder.images.len() == n);
    let chosen = match (state.show_thumbnails, analysis) {
        (true, Some(a)) if atlas.slots.len() == n => {
            let projector = Projector::new(cam, transform, window.size());
            let labels = &a.clusters.labels;
            choose_billboards(
                &positions.current,
                &projector,
                BILLBOARD_BUDGET,
                MIN_BILLBOARD_PIXELS,
                |i| !state.hidden_clusters.contains(&labels[i]),
            )
        }
        _ => Vec::new(),
    };
    let rotation = transform.rotation();
    let (right, up, back) = (rotation * Vec3::X, rotation * Vec3::Y, rotation * Vec3::Z);
    // Per page: positions, UVs, indices.
    type Quads = (Vec<[f32; 3]>, Vec<[f32; 2]>, Vec<u32>);
    let mut per_page: Vec<Quads> = vec![Default::default(); atlas.pages.len()];
    let mut billboarded = vec![false; n];
    for i in chosen {
        billboarded[i] = true;
        let slot = atlas.slots[i];
        // Keep the image's aspect; lift it a little toward the camera so it
        // covers its own splat.
        let (hw, hh) = if slot.aspect >= 1.0 {
            (BILLBOARD_HALF, BILLBOARD_HALF / slot.aspect)
        } else {
            (BILLBOARD_HALF * slot.aspect, BILLBOARD_HALF)
        };
        let centre = positions.current[i] + back * 0.02;
        let (p, uv, idx) = &mut per_page[slot.page];
        let base = p.len() as u32;
        for (sx, sy, u, v) in [
            (-1.0, -1.0, slot.uv.min.x, slot.uv.max.y),
            (1.0, -1.0, slot.uv.max.x, slot.uv.max.y),
            (1.0, 1.0, slot.uv.max.x, slot.uv.min.y),
            (-1.0, 1.0, slot.uv.min.x, slot.uv.min.y),
        ] {
            p.push((centre + right * sx * hw + up * sy * hh).to_array());
            uv.push([u, v]);
        }
        idx.extend([base, base + 1, base + 2, base, base + 2, base + 3]);
    }
    for ((mesh, entity, filled), (p, uv, idx)) in atlas.pages.iter_mut().zip(per_page) {
        // Most pages hold no billboard most of the time: leave those alone
        // rather than upload an empty mesh per page every frame.
        if p.is_empty() && !*filled {
            continue;
        }
        *filled = !p.is_empty();
        if let Ok(mut vis) = visibility.get_mut(*entity) {
            *vis = if p.is_empty() {
                Visibility::Hidden
            } else {
                Visibility::Visible
            };
        }
        if let Some(mut m) = meshes.get_mut(mesh.id()) {
            *m = billboard_mesh(&p, &uv, &idx);
        }
    }
    atlas.billboarded = billboarded;
    if analysis.is_some() {
        ready.0 = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fill_rows_then_pages_without_overlap() {
        let cell = 64;
        let page = 256; // 4×4 cells
        let a = slot_of(0, cell, page, 64, 64);
        assert_eq!(a.page, 0);
        assert_eq!(a.uv, Rect::new(0.0, 0.0, 0.25, 0.25));
        let b = slot_of(5, cell, page, 64, 64);
        assert_eq!(b.uv.min, Vec2::new(0.25, 0.25));
        let c = slot_of(16, cell, page, 64, 64);
        assert_eq!(c.page, 1);
        assert_eq!(c.uv.min, Vec2::ZERO);
        // A wide thumbnail is centred vertically and keeps its aspect.
        let wide = slot_of(1, cell, page, 64, 32);
        assert_eq!(wide.uv, Rect::new(0.25, 16.0 / 256.0, 0.5, 48.0 / 256.0));
        assert_eq!(wide.aspect, 2.0);
    }

    #[test]
    fn packed_pixels_land_in_their_cells() {
        let thumbs: Vec<Option<Thumbnail>> = (0..20u8)
            .map(|i| {
                Some(Thumbnail {
                    width: 2,
                    height: 2,
                    rgba: vec![i; 16],
                })
            })
            .collect();
        let (pages, slots) = pack_pages(&thumbs, 4, 16); // 16 cells a page
        assert_eq!(pages.len(), 2);
        for (i, slot) in slots.iter().enumerate() {
            let x = (slot.uv.min.x * 16.0) as usize;
            let y = (slot.uv.min.y * 16.0) as usize;
            let at = (y * 16 + x) * 4;
            assert_eq!(pages[slot.page][at], i as u8, "thumbnail {i}");
            assert_eq!(pages[slot.page][at + 16 * 4 + 4], i as u8);
        }
    }

    #[test]
    fn billboards_go_to_the_nearest_points_in_view() {
        let camera = Transform::from_xyz(0.0, 0.0, 10.0).looking_at(Vec3::ZERO, Vec3::Y);
        let projector = Projector {
            view_from_world: camera.to_matrix().inverse(),
            clip_from_view: Mat4::perspective_infinite_reverse_rh(0.8, 1.0, 0.01),
            viewport: Rect::new(0.0, 0.0, 800.0, 800.0),
        };
        let points: Vec<Vec3> = (0..10)
            .map(|i| Vec3::new(0.0, 0.0, i as f32 * 0.5))
            .collect();
        let mut with_outside = points.clone();
        with_outside.push(Vec3::new(100.0, 0.0, 5.0)); // out of view
        with_outside.push(Vec3::new(0.0, 0.0, 20.0)); // behind the camera
        let chosen = choose_billboards(&with_outside, &projector, 3, 0.0, |_| true);
        assert_eq!(chosen, vec![9, 8, 7]);
        let chosen = choose_billboards(&with_outside, &projector, 3, 0.0, |i| i != 8);
        assert_eq!(chosen, vec![9, 7, 6]);
        // Far away the images would be specks: none are chosen.
        let far: Vec<Vec3> = points.iter().map(|p| *p - Vec3::Z * 500.0).collect();
        assert!(choose_billboards(&far, &projector, 3, 12.0, |_| true).is_empty());
        // The size limit keeps only the near ones.
        let near_enough = choose_billboards(&points, &projector, 10, 15.0, |_| true);
        assert_eq!(near_enough, vec![9, 8, 7, 6, 5]);
    }
}
