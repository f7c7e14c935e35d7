//! Thumbnail billboards, loaded on demand.
//!
//! Which points are drawn as pictures: those in view, nearest the camera
//! first, each at a readable size on screen (at least
//! [`MIN_BILLBOARD_HALF_PIXELS`] half-side, larger when zoomed in so close
//! that its world size is larger), skipping any that would pile onto one
//! already placed (a screen occupancy grid), up to a budget that adapts to
//! the count: all of a few hundred images, [`MAX_BILLBOARDS`] of a million.
//!
//! Where the pictures come from: the pipeline's thumbnail store (SQLite,
//! keyed by content hash). A [`Worker`] thread reads and decodes only the
//! thumbnails the current view wants; they go into a fixed pool of atlas
//! pages on the GPU ([`MAX_PAGES`] × 256 cells of 64 px), cells reused
//! least-recently-used first, and each arriving thumbnail is written into
//! its cell alone (16 KB), never a whole page. Nothing per image is kept in
//! memory beyond the cells' owners: 100k or 1M images cost the same here.
//!
//! Drawing: one mesh per atlas page, holding camera-facing quads rebuilt
//! when the view changes (at most [`MAX_BILLBOARDS`] quads).

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bevy::asset::RenderAssetUsages;
use bevy::camera::visibility::NoFrustumCulling;
use bevy::ecs::system::SystemParam;
use bevy::mesh::{Indices, PrimitiveTopology};
use bevy::prelude::*;
use bevy::render::render_asset::RenderAssets;
use bevy::render::render_resource::{
    Extent3d, Origin3d, TexelCopyBufferLayout, TexelCopyTextureInfo, TextureAspect,
    TextureDimension, TextureFormat,
};
use bevy::render::renderer::RenderQueue;
use bevy::render::texture::GpuImage;
use bevy::render::{Render, RenderApp, RenderSystems};
use bevy::window::PrimaryWindow;

use super::camera::ViewCamera;
use super::layout::Positions;
use super::loading::Dataset;
use super::picking::Projector;
use super::points::{BaseCloud, PointCloud, PointSystems};
use super::spatial::{PointGrid, SpatialIndex, focal_pixels, nearest_first_brute};
use super::state::ViewState;
use super::tasks::Worker;
use crate::cache::thumbnails::ThumbnailStore;
use crate::decode::{ContentHash, Thumbnail};

/// Pixels a side of the thumbnails the viewer asks the pipeline for.
pub const THUMBNAIL_SIZE: u32 = 64;
/// Side of an atlas page: 16 × 16 cells of 64 px.
const PAGE_SIZE: u32 = 1024;
const CELLS_PER_ROW: u32 = PAGE_SIZE / THUMBNAIL_SIZE;
const CELLS_PER_PAGE: u32 = CELLS_PER_ROW * CELLS_PER_ROW;
/// GPU pages at most: 4,096 cells (64 MB), four times the most billboards
/// shown at once, so turning back and forth rarely reloads.
pub const MAX_PAGES: usize = 16;
/// Most billboards drawn at once.
pub const MAX_BILLBOARDS: usize = 1000;
/// Half the side of a billboard in world units, once zoomed in enough that
/// this is more than [`MIN_BILLBOARD_HALF_PIXELS`] on screen.
pub const BILLBOARD_HALF: f32 = 0.12;
/// Half the side of a billboard on screen at least, in logical pixels (a
/// 48-px picture: readable, and a few hundred fit the window).
pub const MIN_BILLBOARD_HALF_PIXELS: f32 = 24.0;
/// Two billboards may overlap by this share of their sides at most
/// (1 - SPACING); the nearer one is drawn over the farther.
const SPACING: f32 = 0.85;
/// After this many candidates in a row found no room, the screen is taken:
/// stop looking (bounds the work at a million points to a few ms, while a
/// dense cluster in front still leaves room to reach the ones behind it).
const MAX_REJECTED_IN_A_ROW: usize = 20_000;
/// Thumbnails asked of the store per request: about 20-50 ms of decoding.
const LOADS_PER_REQUEST: usize = 96;
/// While the layout moves, billboards follow the points only below this
/// count (the spatial index is built once the points settle).
const BRUTE_FORCE_UP_TO: usize = 50_000;

pub struct ThumbnailsPlugin;

impl Plugin for ThumbnailsPlugin {
    fn build(&self, app: &mut App) {
        let uploads = CellUploads::default();
        app.init_resource::<ThumbnailsReady>()
            .init_resource::<Billboards>()
            .insert_resource(Atlas::new(uploads.clone()))
            .add_systems(
                Update,
                (follow_dataset, receive_thumbnails, place_billboards)
                    .chain()
                    .in_set(BillboardSystems)
                    .after(PointSystems)
                    .after(super::layout::LayoutSystems)
                    .after(super::camera::CameraSystems),
            );
        app.sub_app_mut(RenderApp)
            .insert_resource(uploads)
            .add_systems(Render, write_cells.in_set(RenderSystems::PrepareResources));
    }
}

/// The systems that choose and place billboards; picking and the overlay
/// run after them.
#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub struct BillboardSystems;

/// True once the billboards of the current view are on screen with their
/// pictures (or there are none to wait for): the screenshot hook and the
/// benchmark wait for it.
#[derive(Resource, Default)]
pub struct ThumbnailsReady(pub bool);

/// One billboard drawn this frame, where it is on screen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Billboard {
    pub index: usize,
    /// Centre, logical pixels.
    pub centre: Vec2,
    /// Half width and height, logical pixels.
    pub half: Vec2,
    /// View depth of its point.
    pub depth: f32,
}

impl Billboard {
    pub fn contains(&self, cursor: Vec2) -> bool {
        let d = (cursor - self.centre).abs();
        d.x <= self.half.x && d.y <= self.half.y
    }
}

/// The billboards drawn now; picking tests their rectangles.
#[derive(Resource, Default)]
pub struct Billboards {
    pub shown: Vec<Billboard>,
    /// Counts the placements, so readers notice a new one.
    pub generation: u64,
}

impl Billboards {
    pub fn shows(&self, index: usize) -> bool {
        self.shown.iter().any(|b| b.index == index)
    }

    /// The front-most billboard under `cursor`: its point and depth.
    pub fn at(&self, cursor: Vec2) -> Option<(usize, f32)> {
        self.shown
            .iter()
            .filter(|b| b.contains(cursor))
            .min_by(|a, b| a.depth.total_cmp(&b.depth))
            .map(|b| (b.index, b.depth))
    }
}

/// How many billboards a map of `n` points gets at most: every picture of
/// a small folder, [`MAX_BILLBOARDS`] beyond.
pub fn budget(n: usize) -> usize {
    n.min(MAX_BILLBOARDS)
}

/// What [`choose_billboards`] needs besides the points.
pub struct Choice<'a> {
    pub projector: &'a Projector,
    pub budget: usize,
    /// Half-side on screen at least (logical pixels).
    pub min_half: f32,
    /// Half-side in world units, when that is larger on screen.
    pub world_half: f32,
}

/// Picks the billboards: points in view nearest the camera first, each as
/// large as the larger of `min_half` pixels and `world_half` world units,
/// skipping those that would overlap a nearer one by more than
/// 1 - [`SPACING`] of their side. `shown(i)` leaves out hidden points,
/// `aspect(i)` is the picture's width / height when known.
pub fn choose_billboards(
    points: &[Vec3],
    grid: Option<&PointGrid>,
    choice: &Choice,
    shown: impl Fn(usize) -> bool,
    aspect: impl Fn(usize) -> Option<f32>,
) -> Vec<Billboard> {
    let mut chosen = Vec::new();
    if choice.budget == 0 {
        return chosen;
    }
    let focal = focal_pixels(choice.projector);
    let mut occupancy = Occupancy::new(choice.projector.viewport, choice.min_half);
    let mut rejected_in_a_row = 0;
    let mut consider = |i: usize, screen: Vec2, depth: f32| {
        if !shown(i) {
            return ControlFlow::Continue(());
        }
        let half = choice.min_half.max(choice.world_half * focal / depth);
        if occupancy.claim(screen, half) {
            rejected_in_a_row = 0;
            let half = match aspect(i) {
                Some(a) if a >= 1.0 => Vec2::new(half, half / a),
                Some(a) => Vec2::new(half * a, half),
                None => Vec2::splat(half),
            };
            chosen.push(Billboard {
                index: i,
                centre: screen,
                half,
                depth,
            });
        } else {
            rejected_in_a_row += 1;
        }
        if chosen.len() >= choice.budget || rejected_in_a_row >= MAX_REJECTED_IN_A_ROW {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    match grid {
        Some(grid) => grid.nearest_first(points, choice.projector, &mut consider),
        None => nearest_first_brute(points, choice.projector, &mut consider),
    }
    chosen
}

/// Screen occupancy: the billboards placed so far, bucketed by position.
struct Occupancy {
    origin: Vec2,
    bucket: f32,
    columns: i32,
    rows: i32,
    buckets: Vec<Vec<(Vec2, f32)>>,
    largest: f32,
}

impl Occupancy {
    fn new(viewport: Rect, min_half: f32) -> Self {
        let bucket = (2.0 * min_half * SPACING).max(4.0);
        let size = viewport.size().max(Vec2::ONE);
        let columns = (size.x / bucket).ceil() as i32 + 1;
        let rows = (size.y / bucket).ceil() as i32 + 1;
        Self {
            origin: viewport.min,
            bucket,
            columns,
            rows,
            buckets: vec![Vec::new(); (columns * rows) as usize],
            largest: 0.0,
        }
    }

    fn cell(&self, p: Vec2) -> IVec2 {
        ((p - self.origin) / self.bucket)
            .floor()
            .as_ivec2()
            .clamp(IVec2::ZERO, IVec2::new(self.columns - 1, self.rows - 1))
    }

    /// Places a square of half-side `half` at `centre` unless it overlaps
    /// a placed one too much.
    fn claim(&mut self, centre: Vec2, half: f32) -> bool {
        let reach = ((SPACING * (half + self.largest)) / self.bucket).ceil() as i32;
        let c = self.cell(centre);
        for y in (c.y - reach).max(0)..=(c.y + reach).min(self.rows - 1) {
            for x in (c.x - reach).max(0)..=(c.x + reach).min(self.columns - 1) {
                for &(other, other_half) in &self.buckets[(y * self.columns + x) as usize] {
                    let apart = SPACING * (half + other_half);
                    let d = (centre - other).abs();
                    if d.x < apart && d.y < apart {
                        return false;
                    }
                }
            }
        }
        let at = (c.y * self.columns + c.x) as usize;
        self.buckets[at].push((centre, half));
        self.largest = self.largest.max(half);
        true
    }
}

// ---- The atlas: GPU pages, cells reused least recently used first ----

/// Where a thumbnail lives: its page and the cell's column and row there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CellId(u32);

impl CellId {
    pub fn page(self) -> usize {
        (self.0 / CELLS_PER_PAGE) as usize
    }

    /// Top-left pixel of the cell in its page.
    pub fn origin(self) -> UVec2 {
        let within = self.0 % CELLS_PER_PAGE;
        UVec2::new(within % CELLS_PER_ROW, within / CELLS_PER_ROW) * THUMBNAIL_SIZE
    }

    /// UV rectangle of a `size` picture centred in the cell, inset by half a
    /// texel so linear filtering never reads the neighbouring cell.
    pub fn uv(self, size: UVec2) -> Rect {
        let size = size.min(UVec2::splat(THUMBNAIL_SIZE));
        let min = self.origin() + (UVec2::splat(THUMBNAIL_SIZE) - size) / 2;
        let page = PAGE_SIZE as f32;
        Rect::from_corners(
            (min.as_vec2() + 0.5) / page,
            ((min + size).as_vec2() - 0.5) / page,
        )
    }
}

/// Which thumbnail each cell holds and when it was last drawn.
#[derive(Debug, Default)]
pub struct Cells {
    owner: Vec<Option<ContentHash>>,
    size: Vec<UVec2>,
    last_used: Vec<u64>,
    by_hash: HashMap<ContentHash, CellId>,
    capacity: usize,
}

impl Cells {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            ..default()
        }
    }

    pub fn get(&self, hash: &ContentHash) -> Option<(CellId, UVec2)> {
        self.by_hash
            .get(hash)
            .map(|&c| (c, self.size[c.0 as usize]))
    }

    /// Marks `hash`'s cell as drawn in `frame`.
    pub fn touch(&mut self, hash: &ContentHash, frame: u64) {
        if let Some(c) = self.by_hash.get(hash) {
            self.last_used[c.0 as usize] = frame;
        }
    }

    /// A cell for `hash`: a fresh one while the pool has room, else the
    /// least recently used one not drawn in `frame`; `None` if every cell is
    /// drawn now.
    pub fn allocate(&mut self, hash: ContentHash, size: UVec2, frame: u64) -> Option<CellId> {
        if let Some(&c) = self.by_hash.get(&hash) {
            self.size[c.0 as usize] = size;
            self.last_used[c.0 as usize] = frame;
            return Some(c);
        }
        let slot = if self.owner.len() < self.capacity {
            self.owner.push(None);
            self.size.push(UVec2::ZERO);
            self.last_used.push(0);
            self.owner.len() - 1
        } else {
            let (slot, &used) = self
                .last_used
                .iter()
                .enumerate()
                .min_by_key(|&(_, used)| *used)?;
            if used >= frame {
                return None;
            }
            slot
        };
        if let Some(old) = self.owner[slot].take() {
            self.by_hash.remove(&old);
        }
        let id = CellId(slot as u32);
        self.owner[slot] = Some(hash);
        self.size[slot] = size;
        self.last_used[slot] = frame;
        self.by_hash.insert(hash, id);
        Some(id)
    }

    /// Pages the allocated cells span.
    pub fn pages(&self) -> usize {
        self.owner.len().div_ceil(CELLS_PER_PAGE as usize)
    }

    pub fn clear(&mut self) {
        *self = Self::with_capacity(self.capacity);
    }
}

/// A thumbnail to copy into a cell of a page, on the render side.
struct CellUpload {
    page: AssetId<Image>,
    origin: UVec2,
    size: UVec2,
    rgba: Vec<u8>,
}

/// Cell writes handed from the main world to the render world.
#[derive(Resource, Clone, Default)]
struct CellUploads(Arc<Mutex<Vec<CellUpload>>>);

impl CellUploads {
    fn push(&self, upload: CellUpload) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(upload);
    }
}

/// One GPU page: its texture, and the mesh of the billboards that use it.
struct Page {
    image: Handle<Image>,
    mesh: Handle<Mesh>,
    entity: Entity,
    /// Whether its mesh holds quads now.
    filled: bool,
}

/// A request to the loader thread: these thumbnails from that store.
struct LoadRequest {
    store: PathBuf,
    generation: u64,
    hashes: Vec<ContentHash>,
}

/// The loader's answer.
struct Loaded {
    generation: u64,
    found: Vec<(ContentHash, Thumbnail)>,
    missing: Vec<ContentHash>,
}

/// The atlas, its cells, and the loader feeding them.
#[derive(Resource)]
pub struct Atlas {
    /// The [`Dataset::generation`] whose thumbnails are wanted.
    generation: u64,
    store: Option<PathBuf>,
    pages: Vec<Page>,
    cells: Cells,
    /// Thumbnails the store does not have: these points stay dots.
    missing: HashSet<ContentHash>,
    /// Asked of the loader, not answered yet.
    in_flight: Vec<ContentHash>,
    loader: Option<Worker<LoadRequest, Loaded>>,
    uploads: CellUploads,
    /// Counts placements; cells drawn in the current one are not evicted.
    frame: u64,
    /// New pictures arrived since the last placement.
    arrived: bool,
}

impl Atlas {
    fn new(uploads: CellUploads) -> Self {
        Self {
            generation: 0,
            store: None,
            pages: Vec::new(),
            cells: Cells::with_capacity(MAX_PAGES * CELLS_PER_PAGE as usize),
            missing: HashSet::new(),
            in_flight: Vec::new(),
            loader: None,
            uploads,
            frame: 1,
            arrived: false,
        }
    }

    /// Cells in use (a measure of what the viewer holds).
    pub fn resident(&self) -> usize {
        self.cells.by_hash.len()
    }
}

fn start_loader() -> Worker<LoadRequest, Loaded> {
    // One connection, kept while the store stays the same (a store is not
    // Sync: it lives on this thread only).
    let open: std::cell::RefCell<Option<ThumbnailStore>> = Default::default();
    Worker::start("thumbnails", move |request: LoadRequest, cancel| {
        let mut open = open.borrow_mut();
        if open.as_ref().is_none_or(|s| s.path() != request.store) {
            *open = Some(ThumbnailStore::open(&request.store)?);
        }
        let store = open.as_ref().expect("opened above");
        let mut found = Vec::with_capacity(request.hashes.len());
        for chunk in request.hashes.chunks(16) {
            cancel.check()?;
            found.extend(store.get_many(chunk, THUMBNAIL_SIZE)?);
        }
        let got: HashSet<ContentHash> = found.iter().map(|(h, _)| *h).collect();
        let missing = request
            .hashes
            .iter()
            .filter(|h| !got.contains(h))
            .copied()
            .collect();
        Ok(Loaded {
            generation: request.generation,
            found,
            missing,
        })
    })
}

/// A new analysis: forget what the cells hold (the pages stay) and which
/// store to read.
fn follow_dataset(
    dataset: Res<Dataset>,
    mut atlas: ResMut<Atlas>,
    mut ready: ResMut<ThumbnailsReady>,
) {
    if atlas.generation == dataset.generation {
        return;
    }
    let atlas = atlas.as_mut();
    atlas.generation = dataset.generation;
    atlas.store = dataset
        .analysis
        .as_ref()
        .and_then(|a| a.folder.thumbnail_store.clone());
    atlas.cells.clear();
    atlas.missing.clear();
    atlas.in_flight.clear();
    atlas.arrived = true;
    ready.0 = false;
}

/// What arriving thumbnails need to become pages, cells and uploads.
#[derive(SystemParam)]
struct PageAssets<'w, 's> {
    commands: Commands<'w, 's>,
    images: ResMut<'w, Assets<Image>>,
    meshes: ResMut<'w, Assets<Mesh>>,
    materials: ResMut<'w, Assets<StandardMaterial>>,
}

impl PageAssets<'_, '_> {
    fn add_page(&mut self) -> Page {
        // Black until cells are written: only written cells are ever shown.
        let image = self.images.add(Image::new(
            Extent3d {
                width: PAGE_SIZE,
                height: PAGE_SIZE,
                depth_or_array_layers: 1,
            },
            TextureDimension::D2,
            vec![0; (PAGE_SIZE * PAGE_SIZE * 4) as usize],
            TextureFormat::Rgba8UnormSrgb,
            // The pixels live on the GPU only; cells are written in place.
            RenderAssetUsages::RENDER_WORLD,
        ));
        let material = self.materials.add(StandardMaterial {
            base_color_texture: Some(image.clone()),
            unlit: true,
            cull_mode: None,
            alpha_mode: AlphaMode::Opaque,
            ..default()
        });
        let mesh = self.meshes.add(billboard_mesh(&[], &[], &[]));
        let entity = self
            .commands
            .spawn((
                Mesh3d(mesh.clone()),
                MeshMaterial3d(material),
                Transform::default(),
                Visibility::Hidden,
                // The mesh is rebuilt around the camera's view every time.
                NoFrustumCulling,
            ))
            .id();
        Page {
            image,
            mesh,
            entity,
            filled: false,
        }
    }
}

fn receive_thumbnails(mut atlas: ResMut<Atlas>, mut assets: PageAssets) {
    let Some(loader) = &atlas.loader else {
        return;
    };
    let answers = loader.poll();
    if answers.is_empty() {
        return;
    }
    let atlas = atlas.as_mut();
    for (_, outcome) in answers {
        let loaded = match outcome {
            Ok(loaded) if loaded.generation == atlas.generation => loaded,
            Ok(_) => continue, // for an analysis no longer shown
            Err(err) => {
                // The store is unreadable: the points stay dots.
                warn!("thumbnails could not be loaded: {err}");
                atlas.store = None;
                atlas.in_flight.clear();
                continue;
            }
        };
        atlas.in_flight.clear();
        atlas.missing.extend(loaded.missing);
        for (hash, thumbnail) in loaded.found {
            let size =
                UVec2::new(thumbnail.width, thumbnail.height).min(UVec2::splat(THUMBNAIL_SIZE));
            let Some(cell) = atlas.cells.allocate(hash, size, atlas.frame) else {
                break; // every cell is on screen now; the rest wait
            };
            while atlas.pages.len() <= cell.page() {
                let page = assets.add_page();
                atlas.pages.push(page);
            }
            atlas.uploads.push(CellUpload {
                page: atlas.pages[cell.page()].image.id(),
                origin: cell.origin(),
                size,
                rgba: crop(&thumbnail, size),
            });
        }
        atlas.arrived = true;
    }
}

/// The top-left `size` pixels of `t` (a thumbnail never exceeds a cell, but
/// a store written with another size might).
fn crop(t: &Thumbnail, size: UVec2) -> Vec<u8> {
    if size == UVec2::new(t.width, t.height) {
        return t.rgba.clone();
    }
    let mut out = Vec::with_capacity((size.x * size.y * 4) as usize);
    for row in 0..size.y as usize {
        let start = row * t.width as usize * 4;
        out.extend_from_slice(&t.rgba[start..start + size.x as usize * 4]);
    }
    out
}

/// What the placement reads.
#[derive(SystemParam)]
struct PlacementInputs<'w, 's> {
    dataset: Res<'w, Dataset>,
    positions: Res<'w, Positions>,
    state: Res<'w, ViewState>,
    index: Res<'w, SpatialIndex>,
    window: Single<'w, 's, &'static Window, With<PrimaryWindow>>,
    camera: Single<'w, 's, (&'static Camera, &'static GlobalTransform), With<ViewCamera>>,
    cloud: Single<'w, 's, &'static PointCloud, With<BaseCloud>>,
}

/// What a placement depends on: when none of it changed, nothing moves.
#[derive(Clone, PartialEq)]
struct PlacedFor {
    view: Mat4,
    viewport: Option<Rect>,
    positions: u64,
    styles: u64,
    show: bool,
    grid: bool,
}

fn place_billboards(
    inputs: PlacementInputs,
    mut atlas: ResMut<Atlas>,
    mut billboards: ResMut<Billboards>,
    mut ready: ResMut<ThumbnailsReady>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut visibility: Query<&mut Visibility>,
    mut placed_for: Local<Option<PlacedFor>>,
) {
    let (cam, transform) = *inputs.camera;
    let positions = &inputs.positions.current;
    let n = positions.len();
    let analysis = inputs
        .dataset
        .analysis
        .as_ref()
        .filter(|a| a.folder.images.len() == n);
    let grid = inputs.index.grid_for(&inputs.positions);
    let key = PlacedFor {
        view: transform.to_matrix(),
        viewport: cam.logical_viewport_rect(),
        positions: inputs.cloud.positions_generation,
        styles: inputs.cloud.styles_generation,
        show: inputs.state.show_thumbnails,
        grid: grid.is_some(),
    };
    if placed_for.as_ref() == Some(&key) && !atlas.arrived {
        return;
    }
    *placed_for = Some(key);
    let atlas = atlas.as_mut();
    atlas.arrived = false;
    atlas.frame += 1;
    let store = atlas.store.clone();
    let styles = &inputs.cloud.styles;
    let wants_pictures = analysis.is_some() && store.is_some() && inputs.state.show_thumbnails;
    // A large map waits for its spatial index (built once the points settle).
    let can_place = styles.len() == n && (grid.is_some() || n <= BRUTE_FORCE_UP_TO);
    let chosen = match analysis {
        Some(a) if wants_pictures && can_place => {
            let projector = Projector::new(cam, transform, inputs.window.size());
            let choice = Choice {
                projector: &projector,
                budget: budget(n),
                min_half: MIN_BILLBOARD_HALF_PIXELS,
                world_half: BILLBOARD_HALF,
            };
            let images = &a.folder.images;
            let cells = &atlas.cells;
            let missing = &atlas.missing;
            choose_billboards(
                positions,
                grid,
                &choice,
                // Hidden points, and those without a picture, stay dots.
                |i| styles[i].radius > 0.0 && !missing.contains(&images[i].hash),
                |i| {
                    cells
                        .get(&images[i].hash)
                        .map(|(_, s)| s.x.max(1) as f32 / s.y.max(1) as f32)
                },
            )
        }
        _ => Vec::new(),
    };
    // Pictures resident now are drawn; the others are asked for and drawn
    // once they arrive (their place on screen is kept meanwhile).
    let mut wanted = Vec::new();
    let mut drawn = Vec::with_capacity(chosen.len());
    if let Some(a) = analysis {
        for b in &chosen {
            let hash = a.folder.images[b.index].hash;
            match atlas.cells.get(&hash) {
                Some((cell, size)) => {
                    atlas.cells.touch(&hash, atlas.frame);
                    drawn.push((*b, cell, size));
                }
                None => wanted.push(hash),
            }
        }
    }
    build_meshes(
        &mut atlas.pages,
        &drawn,
        positions,
        transform,
        &Projector::new(cam, transform, inputs.window.size()),
        &mut meshes,
        &mut visibility,
    );
    billboards.shown = drawn.iter().map(|(b, _, _)| *b).collect();
    billboards.generation += 1;
    request_missing(atlas, store, wanted.clone());
    ready.0 = analysis.is_some()
        && (!wants_pictures || (can_place && wanted.is_empty() && atlas.in_flight.is_empty()));
}

/// Asks the loader for the wanted thumbnails not already on their way
/// (one request at a time: a new one would cancel work still useful).
fn request_missing(atlas: &mut Atlas, store: Option<PathBuf>, mut wanted: Vec<ContentHash>) {
    let Some(store) = store else {
        return;
    };
    if wanted.is_empty() || !atlas.in_flight.is_empty() {
        return;
    }
    wanted.sort_unstable();
    wanted.dedup();
    wanted.truncate(LOADS_PER_REQUEST);
    let loader = atlas.loader.get_or_insert_with(start_loader);
    loader.request(LoadRequest {
        store,
        generation: atlas.generation,
        hashes: wanted.clone(),
    });
    atlas.in_flight = wanted;
}

/// Rebuilds the quads of each page that holds billboards now (or held some
/// before): camera-facing rectangles of the chosen size on screen, just in
/// front of their points so they cover their own splat.
fn build_meshes(
    pages: &mut [Page],
    drawn: &[(Billboard, CellId, UVec2)],
    positions: &[Vec3],
    transform: &GlobalTransform,
    projector: &Projector,
    meshes: &mut Assets<Mesh>,
    visibility: &mut Query<&mut Visibility>,
) {
    let rotation = transform.rotation();
    let (right, up, back) = (rotation * Vec3::X, rotation * Vec3::Y, rotation * Vec3::Z);
    let focal = focal_pixels(projector);
    type Quads = (Vec<[f32; 3]>, Vec<[f32; 2]>, Vec<u32>);
    let mut per_page: Vec<Quads> = vec![Default::default(); pages.len()];
    for (b, cell, size) in drawn {
        let Some(quads) = per_page.get_mut(cell.page()) else {
            continue;
        };
        // A thousandth of the depth: in front of the splat and its halo,
        // too little to move it on screen.
        let lift = b.depth * 1e-3;
        let world_per_pixel = (b.depth - lift) / focal;
        let (hw, hh) = (b.half.x * world_per_pixel, b.half.y * world_per_pixel);
        let centre = positions[b.index] + back * lift;
        let uv = cell.uv(*size);
        let (p, uvs, idx) = quads;
        let base = p.len() as u32;
        for (sx, sy, u, v) in [
            (-1.0, -1.0, uv.min.x, uv.max.y),
            (1.0, -1.0, uv.max.x, uv.max.y),
            (1.0, 1.0, uv.max.x, uv.min.y),
            (-1.0, 1.0, uv.min.x, uv.min.y),
        ] {
            p.push((centre + right * sx * hw + up * sy * hh).to_array());
            uvs.push([u, v]);
        }
        idx.extend([base, base + 1, base + 2, base, base + 2, base + 3]);
    }
    for (page, (p, uv, idx)) in pages.iter_mut().zip(per_page) {
        // Pages without billboards now or before are left alone rather
        // than re-uploaded empty every frame.
        if p.is_empty() && !page.filled {
            continue;
        }
        page.filled = !p.is_empty();
        if let Ok(mut vis) = visibility.get_mut(page.entity) {
            *vis = if p.is_empty() {
                Visibility::Hidden
            } else {
                Visibility::Visible
            };
        }
        if let Some(mut m) = meshes.get_mut(page.mesh.id()) {
            *m = billboard_mesh(&p, &uv, &idx);
        }
    }
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

// ---- Render world: thumbnails written into their cells ----

fn write_cells(
    uploads: Res<CellUploads>,
    images: Res<RenderAssets<GpuImage>>,
    queue: Res<RenderQueue>,
) {
    let mut pending = uploads.0.lock().unwrap_or_else(|p| p.into_inner());
    if pending.is_empty() {
        return;
    }
    // A page made this frame may not be on the GPU yet: its cells wait.
    pending.retain(|u| {
        let Some(image) = images.get(u.page) else {
            return true;
        };
        queue.write_texture(
            TexelCopyTextureInfo {
                texture: &image.texture,
                mip_level: 0,
                origin: Origin3d {
                    x: u.origin.x,
                    y: u.origin.y,
                    z: 0,
                },
                aspect: TextureAspect::All,
            },
            &u.rgba,
            TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(u.size.x * 4),
                rows_per_image: Some(u.size.y),
            },
            Extent3d {
                width: u.size.x,
                height: u.size.y,
                depth_or_array_layers: 1,
            },
        );
        false
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn projector() -> Projector {
        let camera = Transform::from_xyz(0.0, 0.0, 10.0).looking_at(Vec3::ZERO, Vec3::Y);
        Projector {
            view_from_world: camera.to_matrix().inverse(),
            clip_from_view: Mat4::perspective_infinite_reverse_rh(0.8, 1.0, 0.01),
            viewport: Rect::new(0.0, 0.0, 800.0, 800.0),
        }
    }

    fn choice(projector: &Projector, budget: usize) -> Choice<'_> {
        Choice {
            projector,
            budget,
            min_half: 20.0,
            world_half: 0.0,
        }
    }

    fn hash(i: u8) -> ContentHash {
        ContentHash([i; 32])
    }

    #[test]
    fn billboards_go_to_the_nearest_points_in_view() {
        let p = projector();
        // A row across the screen, nearer toward the right, plus one out of
        // view and one behind the camera.
        let mut points: Vec<Vec3> = (0..10)
            .map(|i| Vec3::new(i as f32 * 0.6 - 3.0, 0.0, i as f32 * 0.3))
            .collect();
        points.push(Vec3::new(100.0, 0.0, 5.0));
        points.push(Vec3::new(0.0, 0.0, 20.0));
        let chosen = choose_billboards(&points, None, &choice(&p, 3), |_| true, |_| None);
        let order: Vec<usize> = chosen.iter().map(|b| b.index).collect();
        assert_eq!(order, vec![9, 8, 7]);
        assert!(chosen.windows(2).all(|w| w[0].depth <= w[1].depth));
        // A hidden point is skipped.
        let chosen = choose_billboards(&points, None, &choice(&p, 3), |i| i != 8, |_| None);
        assert_eq!(
            chosen.iter().map(|b| b.index).collect::<Vec<_>>(),
            vec![9, 7, 6]
        );
    }

    #[test]
    fn billboards_do_not_pile_on_each_other() {
        let p = projector();
        // 200 points in a tight clump: only a few fit side by side.
        let points: Vec<Vec3> = (0..200)
            .map(|i| {
                let a = i as f32 * 2.39996;
                Vec3::new(a.cos(), a.sin(), 0.0) * (i as f32).sqrt() * 0.03
            })
            .collect();
        let chosen = choose_billboards(&points, None, &choice(&p, 1000), |_| true, |_| None);
        assert!(!chosen.is_empty() && chosen.len() < 40, "{}", chosen.len());
        for (k, a) in chosen.iter().enumerate() {
            for b in &chosen[..k] {
                let d = (a.centre - b.centre).abs();
                let apart = SPACING * (a.half.x + b.half.x);
                assert!(d.x >= apart || d.y >= apart, "{a:?} overlaps {b:?}");
            }
        }
        // Spread out, every one gets its picture (a small folder opens as
        // pictures).
        let spread: Vec<Vec3> = (0..60)
            .map(|i| {
                Vec3::new(
                    (i % 10) as f32 * 0.8 - 3.6,
                    (i / 10) as f32 * 0.8 - 2.0,
                    0.0,
                )
            })
            .collect();
        let chosen = choose_billboards(&spread, None, &choice(&p, budget(60)), |_| true, |_| None);
        assert_eq!(chosen.len(), 60);
    }

    #[test]
    fn billboards_keep_a_readable_size_and_grow_when_near() {
        let p = projector();
        // Far and to the side (315 px right of centre), and near the centre.
        let points = [Vec3::new(20.0, 0.0, -50.0), Vec3::new(0.0, 0.0, 9.0)];
        let c = Choice {
            world_half: 0.12,
            ..choice(&p, 10)
        };
        let chosen = choose_billboards(&points, None, &c, |_| true, |i| (i == 1).then_some(2.0));
        // The near one (depth 1) is larger than the minimum and keeps its
        // 2:1 aspect; the far one is held at the minimum.
        assert_eq!(chosen[0].index, 1);
        assert!(chosen[0].half.x > 20.0);
        assert!((chosen[0].half.x / chosen[0].half.y - 2.0).abs() < 1e-4);
        assert_eq!(chosen[1].half, Vec2::splat(20.0));
        assert!(chosen[0].contains(chosen[0].centre + Vec2::new(chosen[0].half.x - 1.0, 0.0)));
        assert!(!chosen[0].contains(chosen[0].centre + Vec2::new(0.0, chosen[0].half.y + 1.0)));
    }

    #[test]
    fn the_front_most_billboard_is_hit() {
        let b = |index, x: f32, depth| Billboard {
            index,
            centre: Vec2::new(x, 100.0),
            half: Vec2::splat(20.0),
            depth,
        };
        let shown = Billboards {
            shown: vec![b(0, 100.0, 5.0), b(1, 110.0, 3.0), b(2, 300.0, 1.0)],
            generation: 1,
        };
        assert_eq!(shown.at(Vec2::new(105.0, 100.0)), Some((1, 3.0)));
        assert_eq!(shown.at(Vec2::new(85.0, 100.0)), Some((0, 5.0)));
        assert_eq!(shown.at(Vec2::new(200.0, 100.0)), None);
        assert!(shown.shows(2) && !shown.shows(3));
    }

    #[test]
    fn cells_are_reused_least_recently_used_first_but_never_on_screen() {
        let mut cells = Cells::with_capacity(3);
        let s = UVec2::splat(64);
        let a = cells.allocate(hash(1), s, 1).unwrap();
        let b = cells.allocate(hash(2), s, 2).unwrap();
        let c = cells.allocate(hash(3), s, 3).unwrap();
        assert_eq!([a.0, b.0, c.0], [0, 1, 2]);
        // Asking again for a resident one gives its cell.
        assert_eq!(cells.allocate(hash(2), s, 4), Some(b));
        // Full: the least recently used goes: 1 and 2 are drawn in frame 4,
        // 3 last in frame 3.
        cells.touch(&hash(1), 4);
        let d = cells.allocate(hash(4), s, 4).unwrap();
        assert_eq!(d, c, "hash 3 was used longest ago");
        assert!(cells.get(&hash(3)).is_none());
        assert_eq!(cells.get(&hash(4)), Some((c, s)));
        // Everything drawn in frame 5: nothing can be evicted.
        for h in [1, 2, 4] {
            cells.touch(&hash(h), 5);
        }
        assert_eq!(cells.allocate(hash(5), s, 5), None);
        cells.clear();
        assert_eq!(cells.pages(), 0);
        assert!(cells.get(&hash(1)).is_none());
    }

    #[test]
    fn cells_tile_pages_and_uvs_stay_inside_their_cell() {
        let first = CellId(0);
        assert_eq!((first.page(), first.origin()), (0, UVec2::ZERO));
        let next_row = CellId(CELLS_PER_ROW);
        assert_eq!(next_row.origin(), UVec2::new(0, THUMBNAIL_SIZE));
        let second_page = CellId(CELLS_PER_PAGE + 1);
        assert_eq!(second_page.page(), 1);
        assert_eq!(second_page.origin(), UVec2::new(THUMBNAIL_SIZE, 0));
        // A wide picture is centred vertically; its UVs stay half a texel in.
        let uv = CellId(1).uv(UVec2::new(64, 32));
        let page = PAGE_SIZE as f32;
        assert_eq!(uv.min, Vec2::new(64.5, 16.5) / page);
        assert_eq!(uv.max, Vec2::new(127.5, 47.5) / page);
        let mut cells = Cells::with_capacity(CELLS_PER_PAGE as usize + 1);
        for i in 0..=CELLS_PER_PAGE {
            let mut h = [0; 32];
            h[..4].copy_from_slice(&i.to_le_bytes());
            cells.allocate(ContentHash(h), UVec2::splat(8), 1);
        }
        assert_eq!(cells.pages(), 2);
    }

    #[test]
    fn a_large_thumbnail_is_cropped_to_its_cell() {
        let t = Thumbnail {
            width: 3,
            height: 2,
            rgba: (0..24).collect(),
        };
        assert_eq!(crop(&t, UVec2::new(3, 2)), t.rgba);
        assert_eq!(crop(&t, UVec2::new(2, 1)), (0..8).collect::<Vec<u8>>());
    }
}
