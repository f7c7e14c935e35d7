//! The point cloud: every image is one instance of a unit quad, drawn in a
//! single instanced draw call by `shaders/points.wgsl` (camera-facing round
//! splats). The render-world plumbing follows Bevy's
//! `custom_shader_instancing` example; the instance buffer is re-uploaded
//! only when the instances change (a generation counter), not every frame.

use std::sync::Arc;

use bevy::asset::uuid_handle;
use bevy::camera::visibility::NoFrustumCulling;
use bevy::core_pipeline::core_3d::{Transparent3d, TransparentSortingInfo3d};
use bevy::ecs::query::QueryItem;
use bevy::ecs::system::{SystemParamItem, lifetimeless::*};
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

const SHADER: Handle<Shader> = uuid_handle!("5d0a3c2e-8f4b-4c1e-9a57-2b9c6e1f7d31");

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
            .add_plugins(ExtractComponentPlugin::<PointInstances>::default())
            .add_systems(Startup, spawn_point_cloud)
            .add_systems(
                Update,
                (index_classes, build_point_instances)
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

/// The system that turns state into instances; picking reads the same state.
#[derive(SystemSet, Clone, Debug, PartialEq, Eq, Hash)]
pub struct PointSystems;

/// One instance: world position, radius, linear RGBA.
pub type Instance = [f32; 8];

/// The instances of the cloud, shared with the render world without a copy.
#[derive(Component, Clone, Default)]
pub struct PointInstances {
    pub data: Arc<Vec<Instance>>,
    pub generation: u64,
}

impl SyncComponent for PointInstances {
    type Target = (PointInstances, PointBuffer);
}

impl ExtractComponent for PointInstances {
    type QueryData = &'static PointInstances;
    type QueryFilter = ();
    type Out = PointInstances;

    fn extract_component(item: QueryItem<'_, '_, Self::QueryData>) -> Option<Self::Out> {
        Some(item.clone())
    }
}

/// The folder label ("class") of each image, as an index into `names`.
#[derive(Resource, Default)]
pub struct Classes {
    pub names: Vec<String>,
    pub of_image: Vec<i32>,
    /// The [`Dataset::generation`] these belong to.
    generation: u64,
}

fn spawn_point_cloud(mut commands: Commands, mut meshes: ResMut<Assets<Mesh>>) {
    commands.spawn((
        Mesh3d(meshes.add(Rectangle::new(1.0, 1.0))),
        PointInstances::default(),
        // The mesh's bounds say nothing about where the instances are.
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

fn build_point_instances(
    positions: Res<Positions>,
    inputs: LookInputs,
    mut clouds: Query<&mut PointInstances>,
) {
    if !(positions.is_changed() || inputs.changed()) {
        return;
    }
    let look = inputs.look(positions.current.len());
    let data: Vec<Instance> = positions
        .current
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (radius, c) = look.of(i);
            [p.x, p.y, p.z, radius, c[0], c[1], c[2], c[3]]
        })
        .collect();
    for mut cloud in &mut clouds {
        cloud.data = Arc::new(data.clone());
        cloud.generation += 1;
    }
}

// ---- Render world ----

#[derive(Component)]
pub struct PointBuffer {
    buffer: Buffer,
    length: u32,
    generation: u64,
}

fn prepare_point_buffers(
    mut commands: Commands,
    query: Query<(Entity, &PointInstances, Option<&PointBuffer>)>,
    render_device: Res<RenderDevice>,
) {
    for (entity, instances, existing) in &query {
        if existing.is_some_and(|b| b.generation == instances.generation) {
            continue;
        }
        let bytes: Vec<u8> = instances
            .data
            .iter()
            .flatten()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        if bytes.is_empty() {
            commands.entity(entity).remove::<PointBuffer>();
            continue;
        }
        let buffer = render_device.create_buffer_with_data(&BufferInitDescriptor {
            label: Some("embedscope point instances"),
            contents: &bytes,
            usage: BufferUsages::VERTEX | BufferUsages::COPY_DST,
        });
        commands.entity(entity).insert(PointBuffer {
            buffer,
            length: instances.data.len() as u32,
            generation: instances.generation,
        });
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

impl SpecializedMeshPipeline for PointsPipeline {
    type Key = MeshPipelineKey;

    fn specialize(
        &self,
        key: Self::Key,
        layout: &MeshVertexBufferLayoutRef,
    ) -> Result<RenderPipelineDescriptor, SpecializedMeshPipelineError> {
        let mut descriptor = self.mesh_pipeline.specialize(key, layout)?;
        descriptor.label = Some("embedscope points".into());
        descriptor.vertex.shader = SHADER;
        descriptor.vertex.buffers.push(VertexBufferLayout {
            array_stride: size_of::<Instance>() as u64,
            step_mode: VertexStepMode::Instance,
            attributes: vec![
                // Locations 0-2 are the mesh's position, normal and UV.
                VertexAttribute {
                    format: VertexFormat::Float32x4,
                    offset: 0,
                    shader_location: 3,
                },
                VertexAttribute {
                    format: VertexFormat::Float32x4,
                    offset: VertexFormat::Float32x4.size(),
                    shader_location: 4,
                },
            ],
        });
        descriptor.fragment.as_mut().unwrap().shader = SHADER;
        Ok(descriptor)
    }
}

#[allow(clippy::too_many_arguments)]
fn queue_points(
    draw_functions: Res<DrawFunctions<Transparent3d>>,
    points_pipeline: Res<PointsPipeline>,
    mut pipelines: ResMut<SpecializedMeshPipelines<PointsPipeline>>,
    pipeline_cache: Res<PipelineCache>,
    meshes: Res<RenderAssets<RenderMesh>>,
    render_mesh_instances: Res<RenderMeshInstances>,
    clouds: Query<(Entity, &MainEntity), With<PointInstances>>,
    mut phases: ResMut<ViewSortedRenderPhases<Transparent3d>>,
    views: Query<&ExtractedView>,
    view_key_cache: Res<ViewKeyCache>,
) {
    let draw_points = draw_functions.read().id::<DrawPoints>();
    for view in &views {
        let Some(phase) = phases.get_mut(&view.retained_view_entity) else {
            continue;
        };
        let Some(&view_key) = view_key_cache.get(&view.retained_view_entity) else {
            continue;
        };
        for (entity, main_entity) in &clouds {
            let Some(mesh_instance) = render_mesh_instances.render_mesh_queue_data(*main_entity)
            else {
                continue;
            };
            let Some(mesh) = meshes.get(mesh_instance.mesh_asset_id()) else {
                continue;
            };
            let key = view_key
                | MeshPipelineKey::from_primitive_topology_and_strip_index(
                    mesh.primitive_topology(),
                    mesh.index_format(),
                );
            let Ok(pipeline) =
                pipelines.specialize(&pipeline_cache, &points_pipeline, key, &mesh.layout)
            else {
                continue;
            };
            phase.add_retained(Transparent3d {
                // One item: its sort key does not matter.
                sorting_info: TransparentSortingInfo3d::Sorted {
                    mesh_center: Vec3::ZERO,
                    depth_bias: 0.0,
                },
                entity: (entity, *main_entity),
                pipeline,
                draw_function: draw_points,
                distance: 0.0,
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
    type ItemQuery = Read<PointBuffer>;

    #[inline]
    fn render<'w>(
        item: &P,
        _view: (),
        points: Option<&'w PointBuffer>,
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
        let Some(points) = points else {
            return RenderCommandResult::Skip;
        };
        let Some(vertices) = mesh_allocator.mesh_vertex_slice(&mesh_instance.mesh_asset_id())
        else {
            return RenderCommandResult::Skip;
        };
        pass.set_vertex_buffer(0, vertices.buffer.slice(..));
        pass.set_vertex_buffer(1, points.buffer.slice(..));
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
                    0..points.length,
                );
            }
            RenderMeshBufferInfo::NonIndexed => {
                pass.draw(vertices.range, 0..points.length);
            }
        }
        RenderCommandResult::Success
    }
}
