//! The point cloud: every image is one instance of a unit quad, drawn in a
//! single instanced draw call by `shaders/points.wgsl` (camera-facing round
//! splats). The render-world plumbing follows Bevy's
//! `custom_shader_instancing` example.
//!
//! Each cloud has two instance buffers, uploaded only when they change:
//! positions (12 bytes a point, moving during a layout transition) and styles
//! (colour, radius, minimum size on screen: changing with the colouring and
//! filters). Hover and selection never touch them: they are a second, tiny
//! cloud drawn on top (overlay.rs), so at a million points pointing at one
//! rebuilds nothing.
//!
//! Density: above [`OPAQUE_UP_TO`] points the splats shrink and turn
//! translucent with the count (see [`density`]), and the shader fades
//! splats smaller than a pixel by the area they cover, so dense regions read
//! as brighter instead of an opaque wall.

use std::collections::HashMap;
use std::sync::Arc;

use bevy::asset::uuid_handle;
use bevy::camera::visibility::NoFrustumCulling;
use bevy::core_pipeline::core_3d::{Transparent3d, TransparentSortingInfo3d};
use bevy::ecs::query::QueryItem;
use bevy::ecs::system::{SystemParam, SystemParamItem, lifetimeless::*};
use bevy::mesh::{MeshVertexBufferLayoutRef, VertexBufferLayout};
use bevy::pbr::{
    MeshPipeline, MeshPipelineKey, MeshPipelineSystems, RenderMeshInstances, SetMeshBindGroup,
    SetMeshViewBindGroup, SetMeshViewBindingArrayBindGroup, ViewKeyCache,
};
use bevy::prelude::*;
use bevy::render::{
    Render, RenderApp, RenderStartup, RenderSystems,
    extract_component::{ExtractComponent, ExtractComponentPlugin},
    mesh::{RenderMesh, RenderMeshBufferInfo, allocator::MeshAllocator},
    render_asset::RenderAssets,
    render_phase::{
        AddRenderCommand, DrawFunctions, PhaseItem, PhaseItemExtraIndex, RenderCommand,
        RenderCommandResult, SetItemPipeline, TrackedRenderPass, ViewSortedRenderPhases,
    },
    render_resource::*,
    renderer::RenderDevice,
    sync_component::SyncComponent,
    sync_world::MainEntity,
    view::ExtractedView,
};
use bevy::shader::Shader;

use super::colour::LookInputs;
use super::layout::Positions;
use super::loading::Dataset;
use super::spatial::DiscBounds;
use super::state::ViewState;

const SHADER: Handle<Shader> = uuid_handle!("5d0a3c2e-8f4b-4c1e-9a57-2b9c6e1f7d31");

/// Up to this many points the splats are opaque discs with a rim (depth
/// order is exact); above it they are translucent and blended.
pub const OPAQUE_UP_TO: usize = 20_000;
/// Smallest splat on screen, in physical pixels: a far point never vanishes
/// (the shader fades it by the area it would really cover instead).
pub const MIN_SPLAT_PIXELS: f32 = 1.25;

pub struct PointsPlugin;

impl Plugin for PointsPlugin {
    fn build(&self, app: &mut App) {
        // Embedded, so the viewer runs from any working directory.
        app.world_mut()
            .resource_mut::<Assets<Shader>>()
            .insert(
                SHADER.id(),
                Shader::from_wgsl(
                    include_str!("../../shaders/points.wgsl"),
                    "shaders/points.wgsl",
                ),
            )
            .expect("inserting the points shader");
        app.init_resource::<Classes>()
            .add_plugins(ExtractComponentPlugin::<PointCloud>::default())
            .add_plugins(super::overlay::OverlayPlugin)
            .add_systems(Startup, spawn_point_cloud)
            .add_systems(
                Update,
                (index_classes, (follow_positions, build_styles))
                    .chain()
                    .in_set(PointSystems)
                    .after(super::layout::LayoutSystems),
            );
        app.sub_app_mut(RenderApp)
            .add_render_command::<Transparent3d, DrawPoints>()
            .init_resource::<SpecializedMeshPipelines<PointsPipeline>>()
            .add_systems(
                RenderStartup,
                init_points_pipeline.after(MeshPipelineSystems),
            )
            .add_systems(
                Render,
                (
                    queue_points.in_set(RenderSystems::QueueMeshes),
                    prepare_point_buffers.in_set(RenderSystems::PrepareResources),
                ),
            );
    }
}

/// The systems that turn state into instances; picking reads the same state.
#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub struct PointSystems;

/// How one point is drawn: its sRGB colour (alpha = opacity when blended),
/// its radius in world units (0 hides it) and its smallest radius on
/// screen, in physical pixels. Matches the shader's instance layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Style {
    pub colour: [u8; 4],
    pub radius: f32,
    pub min_pixels: f32,
}

/// Which cloud: the map itself, or the few emphasised points drawn over it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layer {
    #[default]
    Base,
    Overlay,
}

/// A cloud's instances, shared with the render world without a copy. Each
/// half has its own generation, so the render world re-uploads only what
/// changed.
#[derive(Component, Clone, Default)]
pub struct PointCloud {
    pub positions: Arc<Vec<Vec3>>,
    pub positions_generation: u64,
    pub styles: Arc<Vec<Style>>,
    pub styles_generation: u64,
    /// Translucent splats without depth writes (dense clouds).
    pub blended: bool,
    pub layer: Layer,
    /// The largest radius and minimum size among the styles (picking).
    pub bounds: DiscBounds,
}

impl PointCloud {
    /// Replaces the positions (a copy: the layout keeps animating its own).
    pub fn set_positions(&mut self, positions: &[Vec3]) {
        self.positions = Arc::new(positions.to_vec());
        self.positions_generation += 1;
    }

    pub fn set_styles(&mut self, styles: Vec<Style>) {
        self.bounds = styles
            .iter()
            .fold(DiscBounds::default(), |b, s| DiscBounds {
                max_radius: b.max_radius.max(s.radius),
                max_min_pixels: b.max_min_pixels.max(s.min_pixels),
            });
        self.styles = Arc::new(styles);
        self.styles_generation += 1;
    }
}

impl SyncComponent for PointCloud {
    type Target = (PointCloud, PointBuffers);
}

impl ExtractComponent for PointCloud {
    type QueryData = &'static PointCloud;
    type QueryFilter = ();
    type Out = PointCloud;

    fn extract_component(item: QueryItem<'_, '_, Self::QueryData>) -> Option<Self::Out> {
        Some(item.clone())
    }
}

/// Marks the map's cloud (the overlay has [`super::overlay::OverlayCloud`]).
#[derive(Component)]
pub struct BaseCloud;

/// The folder label ("class") of each image, as an index into `names`.
#[derive(Resource, Default)]
pub struct Classes {
    pub names: Vec<String>,
    pub of_image: Vec<i32>,
    /// The [`Dataset::generation`] these belong to.
    generation: u64,
}

fn spawn_point_cloud(mut commands: Commands, mut meshes: ResMut<Assets<Mesh>>) {
    let quad = meshes.add(Rectangle::new(1.0, 1.0));
    commands.spawn((
        BaseCloud,
        Mesh3d(quad.clone()),
        PointCloud::default(),
        // The mesh's bounds say nothing about where the instances are.
        NoFrustumCulling,
        Transform::default(),
        Visibility::default(),
    ));
    commands.spawn((
        super::overlay::OverlayCloud,
        Mesh3d(quad),
        PointCloud {
            layer: Layer::Overlay,
            ..default()
        },
        NoFrustumCulling,
        Transform::default(),
        Visibility::default(),
    ));
}

fn index_classes(dataset: Res<Dataset>, mut classes: ResMut<Classes>) {
    if classes.generation == dataset.generation {
        return;
    }
    let Some(analysis) = &dataset.analysis else {
        return;
    };
    let labels: Vec<&str> = analysis
        .folder
        .images
        .iter()
        .map(|r| super::state::folder_label(&r.relative).unwrap_or("(top level)"))
        .collect();
    let mut names: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    names.sort();
    names.dedup();
    let of_image = labels
        .iter()
        .map(|l| names.binary_search_by(|n| n.as_str().cmp(l)).unwrap() as i32)
        .collect();
    *classes = Classes {
        names,
        of_image,
        generation: dataset.generation,
    };
}

/// Splat radius factor and opacity for a cloud of `n` points: a few
/// thousand points are opaque discs of the chosen size; more shrink with the
/// cube root of the count (their spacing) and turn translucent, so that at
/// 100k-1M points the density shows as brightness.
pub fn density(n: usize) -> (f32, f32) {
    if n <= OPAQUE_UP_TO {
        return (1.0, 1.0);
    }
    let ratio = OPAQUE_UP_TO as f32 / n as f32;
    (ratio.cbrt().clamp(0.35, 1.0), ratio.sqrt().clamp(0.12, 1.0))
}

/// Keeps the base cloud's positions in step with the layout (every frame of
/// a transition, once otherwise).
fn follow_positions(
    positions: Res<Positions>,
    mut cloud: Single<&mut PointCloud, With<BaseCloud>>,
) {
    if positions.is_changed() {
        cloud.set_positions(&positions.current);
    }
}

/// The view state as far as colours go: hover and selection left out.
fn look_state(state: &ViewState) -> ViewState {
    ViewState {
        hovered: None,
        selected: None,
        ..state.clone()
    }
}

fn build_styles(
    positions: Res<Positions>,
    inputs: LookInputs,
    mut built_for: Local<Option<(ViewState, u64, usize)>>,
    mut cloud: Single<&mut PointCloud, With<BaseCloud>>,
) {
    let n = positions.current.len();
    if !(inputs.changed() || positions.is_changed()) {
        return;
    }
    // Hovering and selecting change ViewState too, and the overlay draws
    // them: rebuild only if what colours depend on changed (the state
    // without hover and selection, the analysis, the number of points, the
    // other inputs).
    let state = look_state(&inputs.state);
    let key = (state.clone(), inputs.dataset.generation, n);
    let others_changed =
        inputs.duplicates.is_changed() || inputs.classes.is_changed() || inputs.facts.is_changed();
    if !others_changed && built_for.as_ref() == Some(&key) {
        return;
    }
    let look = inputs.look_for(&state, n);
    let (size, opacity) = density(n);
    let alpha = (opacity * 255.0).round() as u8;
    // Few distinct colours (a palette, dimmed or not): convert each once.
    let mut srgb: HashMap<[u32; 4], [u8; 4]> = HashMap::new();
    let styles: Vec<Style> = (0..n)
        .map(|i| {
            let (radius, linear) = look.of(i);
            let colour = *srgb.entry(linear.map(f32::to_bits)).or_insert_with(|| {
                let [r, g, b, _] = Srgba::from(LinearRgba::from_f32_array(linear)).to_u8_array();
                [r, g, b, alpha]
            });
            Style {
                colour,
                radius: radius * size,
                min_pixels: MIN_SPLAT_PIXELS,
            }
        })
        .collect();
    cloud.set_styles(styles);
    cloud.blended = opacity < 1.0;
    *built_for = Some(key);
}

// ---- Render world ----

/// A cloud's GPU buffers and the generations they hold.
#[derive(Component, Default)]
pub struct PointBuffers {
    positions: Option<(Buffer, u64)>,
    styles: Option<(Buffer, u64)>,
    /// Instances to draw: both buffers hold at least this many.
    count: u32,
}

fn upload(render_device: &RenderDevice, label: &'static str, bytes: &[u8]) -> Option<Buffer> {
    // An empty buffer is not valid: nothing to draw then.
    (!bytes.is_empty()).then(|| {
        render_device.create_buffer_with_data(&BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: BufferUsages::VERTEX | BufferUsages::COPY_DST,
        })
    })
}

fn prepare_point_buffers(
    mut commands: Commands,
    mut clouds: Query<(Entity, &PointCloud, Option<&mut PointBuffers>)>,
    render_device: Res<RenderDevice>,
) {
    for (entity, cloud, buffers) in &mut clouds {
        let mut fresh = PointBuffers::default();
        let is_new = buffers.is_none();
        let buffers = match buffers {
            Some(b) => b.into_inner(),
            None => &mut fresh,
        };
        if buffers.positions.as_ref().map(|b| b.1) != Some(cloud.positions_generation) {
            buffers.positions = upload(
                &render_device,
                "embedscope point positions",
                bytemuck::cast_slice(cloud.positions.as_slice()),
            )
            .map(|b| (b, cloud.positions_generation));
        }
        if buffers.styles.as_ref().map(|b| b.1) != Some(cloud.styles_generation) {
            buffers.styles = upload(
                &render_device,
                "embedscope point styles",
                bytemuck::cast_slice(cloud.styles.as_slice()),
            )
            .map(|b| (b, cloud.styles_generation));
        }
        // Between a new image set's positions and its styles the two differ
        // for a frame: draw what both cover.
        buffers.count = match (&buffers.positions, &buffers.styles) {
            (Some(_), Some(_)) => cloud.positions.len().min(cloud.styles.len()) as u32,
            _ => 0,
        };
        if is_new {
            commands.entity(entity).insert(fresh);
        }
    }
}

#[derive(Resource)]
struct PointsPipeline {
    mesh_pipeline: MeshPipeline,
}

fn init_points_pipeline(mut commands: Commands, mesh_pipeline: Res<MeshPipeline>) {
    commands.insert_resource(PointsPipeline {
        mesh_pipeline: mesh_pipeline.clone(),
    });
}

/// The mesh pipeline's key, and whether the splats are blended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PointsKey {
    mesh: MeshPipelineKey,
    blended: bool,
}

impl SpecializedMeshPipeline for PointsPipeline {
    type Key = PointsKey;

    fn specialize(
        &self,
        key: Self::Key,
        layout: &MeshVertexBufferLayoutRef,
    ) -> Result<RenderPipelineDescriptor, SpecializedMeshPipelineError> {
        let mut descriptor = self.mesh_pipeline.specialize(key.mesh, layout)?;
        descriptor.label = Some("embedscope points".into());
        descriptor.vertex.shader = SHADER;
        // Locations 0-2 are the mesh's position, normal and UV.
        descriptor.vertex.buffers.push(VertexBufferLayout {
            array_stride: size_of::<Vec3>() as u64,
            step_mode: VertexStepMode::Instance,
            attributes: vec![VertexAttribute {
                format: VertexFormat::Float32x3,
                offset: 0,
                shader_location: 3,
            }],
        });
        descriptor.vertex.buffers.push(VertexBufferLayout {
            array_stride: size_of::<Style>() as u64,
            step_mode: VertexStepMode::Instance,
            attributes: vec![
                VertexAttribute {
                    format: VertexFormat::Unorm8x4,
                    offset: 0,
                    shader_location: 4,
                },
                VertexAttribute {
                    format: VertexFormat::Float32,
                    offset: 4,
                    shader_location: 5,
                },
                VertexAttribute {
                    format: VertexFormat::Float32,
                    offset: 8,
                    shader_location: 6,
                },
            ],
        });
        let fragment = descriptor.fragment.as_mut().unwrap();
        fragment.shader = SHADER;
        if key.blended {
            // Translucent splats over whatever is behind them, in instance
            // order: no depth writes, so a splat never hides one drawn later.
            descriptor.vertex.shader_defs.push("BLENDED".into());
            fragment.shader_defs.push("BLENDED".into());
            for target in fragment.targets.iter_mut().flatten() {
                target.blend = Some(BlendState::ALPHA_BLENDING);
            }
            if let Some(depth) = descriptor.depth_stencil.as_mut() {
                depth.depth_write_enabled = Some(false);
            }
        }
        Ok(descriptor)
    }
}

/// What [`queue_points`] reads from the render world.
#[derive(SystemParam)]
struct QueueInputs<'w, 's> {
    draw_functions: Res<'w, DrawFunctions<Transparent3d>>,
    points_pipeline: Res<'w, PointsPipeline>,
    pipelines: ResMut<'w, SpecializedMeshPipelines<PointsPipeline>>,
    pipeline_cache: Res<'w, PipelineCache>,
    meshes: Res<'w, RenderAssets<RenderMesh>>,
    render_mesh_instances: Res<'w, RenderMeshInstances>,
    view_key_cache: Res<'w, ViewKeyCache>,
    views: Query<'w, 's, &'static ExtractedView>,
}

fn queue_points(
    mut inputs: QueueInputs,
    clouds: Query<(Entity, &MainEntity, &PointCloud)>,
    mut phases: ResMut<ViewSortedRenderPhases<Transparent3d>>,
) {
    let draw_points = inputs.draw_functions.read().id::<DrawPoints>();
    for view in &inputs.views {
        let Some(phase) = phases.get_mut(&view.retained_view_entity) else {
            continue;
        };
        let Some(&view_key) = inputs.view_key_cache.get(&view.retained_view_entity) else {
            continue;
        };
        for (entity, main_entity, cloud) in &clouds {
            let Some(mesh_instance) = inputs
                .render_mesh_instances
                .render_mesh_queue_data(*main_entity)
            else {
                continue;
            };
            let Some(mesh) = inputs.meshes.get(mesh_instance.mesh_asset_id()) else {
                continue;
            };
            let key = PointsKey {
                mesh: view_key
                    | MeshPipelineKey::from_primitive_topology_and_strip_index(
                        mesh.primitive_topology(),
                        mesh.index_format(),
                    ),
                blended: cloud.blended,
            };
            let Ok(pipeline) = inputs.pipelines.specialize(
                &inputs.pipeline_cache,
                &inputs.points_pipeline,
                key,
                &mesh.layout,
            ) else {
                continue;
            };
            // The map first, the overlay after it (ascending sort).
            let depth_bias = match cloud.layer {
                Layer::Base => -1e9,
                Layer::Overlay => 1e9,
            };
            phase.add_retained(Transparent3d {
                sorting_info: TransparentSortingInfo3d::Sorted {
                    mesh_center: Vec3::ZERO,
                    depth_bias,
                },
                entity: (entity, *main_entity),
                pipeline,
                draw_function: draw_points,
                distance: depth_bias,
                batch_range: 0..1,
                extra_index: PhaseItemExtraIndex::None,
                indexed: true,
            });
        }
    }
}

type DrawPoints = (
    SetItemPipeline,
    SetMeshViewBindGroup<0>,
    SetMeshViewBindingArrayBindGroup<1>,
    SetMeshBindGroup<2>,
    DrawInstanced,
);

struct DrawInstanced;

impl<P: PhaseItem> RenderCommand<P> for DrawInstanced {
    type Param = (
        SRes<RenderAssets<RenderMesh>>,
        SRes<RenderMeshInstances>,
        SRes<MeshAllocator>,
    );
    type ViewQuery = ();
    type ItemQuery = Read<PointBuffers>;

    #[inline]
    fn render<'w>(
        item: &P,
        _view: (),
        points: Option<&'w PointBuffers>,
        (meshes, render_mesh_instances, mesh_allocator): SystemParamItem<'w, '_, Self::Param>,
        pass: &mut TrackedRenderPass<'w>,
    ) -> RenderCommandResult {
        let mesh_allocator = mesh_allocator.into_inner();
        let Some(mesh_instance) = render_mesh_instances.render_mesh_queue_data(item.main_entity())
        else {
            return RenderCommandResult::Skip;
        };
        let Some(gpu_mesh) = meshes.into_inner().get(mesh_instance.mesh_asset_id()) else {
            return RenderCommandResult::Skip;
        };
        let Some(points) = points.filter(|p| p.count > 0) else {
            return RenderCommandResult::Skip;
        };
        let (Some((positions, _)), Some((styles, _))) = (&points.positions, &points.styles) else {
            return RenderCommandResult::Skip;
        };
        let Some(vertices) = mesh_allocator.mesh_vertex_slice(&mesh_instance.mesh_asset_id())
        else {
            return RenderCommandResult::Skip;
        };
        pass.set_vertex_buffer(0, vertices.buffer.slice(..));
        pass.set_vertex_buffer(1, positions.slice(..));
        pass.set_vertex_buffer(2, styles.slice(..));
        match &gpu_mesh.buffer_info {
            RenderMeshBufferInfo::Indexed {
                index_format,
                count,
            } => {
                let Some(indices) = mesh_allocator.mesh_index_slice(&mesh_instance.mesh_asset_id())
                else {
                    return RenderCommandResult::Skip;
                };
                pass.set_index_buffer(indices.buffer.slice(..), *index_format);
                pass.draw_indexed(
                    indices.range.start..(indices.range.start + count),
                    vertices.range.start as i32,
                    0..points.count,
                );
            }
            RenderMeshBufferInfo::NonIndexed => {
                pass.draw(vertices.range, 0..points.count);
            }
        }
        RenderCommandResult::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rebuild_key_ignores_hover_and_selection() {
        let mut state = ViewState::default();
        state.hidden_clusters.insert(1);
        state.selected = Some(0);
        state.hovered = Some(2);
        let mut other = state.clone();
        other.hovered = Some(1);
        other.selected = None;
        assert!(look_state(&state) == look_state(&other));
        other.splat_size *= 2.0;
        assert!(look_state(&state) != look_state(&other));
    }

    #[test]
    fn dense_clouds_get_smaller_translucent_splats() {
        assert_eq!(density(2_000), (1.0, 1.0));
        assert_eq!(density(OPAQUE_UP_TO), (1.0, 1.0));
        let (size_100k, alpha_100k) = density(100_000);
        let (size_1m, alpha_1m) = density(1_000_000);
        assert!(size_1m < size_100k && size_100k < 1.0);
        assert!(alpha_1m < alpha_100k && alpha_100k < 1.0);
        // Never invisible.
        assert!(size_1m >= 0.35 && alpha_1m >= 0.12);
        assert!(density(100_000_000).1 > 0.0);
    }

    #[test]
    fn style_matches_the_shader_instance_layout() {
        // Colour (Unorm8x4) at 0, radius at 4, minimum pixels at 8.
        assert_eq!(size_of::<Style>(), 12);
        let s = Style {
            colour: [1, 2, 3, 4],
            radius: 0.5,
            min_pixels: 2.0,
        };
        let bytes: &[u8] = bytemuck::bytes_of(&s);
        assert_eq!(&bytes[..4], &[1, 2, 3, 4]);
        assert_eq!(f32::from_ne_bytes(bytes[4..8].try_into().unwrap()), 0.5);
        assert_eq!(f32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 2.0);
    }
}
