// Camera-facing round splats, one instance per image.
//
// The mesh is a unit quad (corners at ±0.5); each instance carries the point's
// world position, its radius and its colour. The quad is expanded in view
// space so it always faces the camera and keeps a world-space size: near
// points look bigger, which reads as depth. The picking code in
// src/view/picking.rs projects the same disc, so what you see is what you hit.

#import bevy_pbr::mesh_view_bindings::view

struct Vertex {
    @location(0) corner: vec3<f32>,
    @location(3) i_position_radius: vec4<f32>,
    @location(4) i_color: vec4<f32>,
};

struct VertexOutput {
    @builtin(position) clip_position: vec4<f32>,
    @location(0) color: vec4<f32>,
    // -1..1 across the quad: the fragment stage cuts the disc out of it.
    @location(1) disc: vec2<f32>,
};

@vertex
fn vertex(v: Vertex) -> VertexOutput {
    let disc = v.corner.xy * 2.0;
    let center = view.view_from_world * vec4<f32>(v.i_position_radius.xyz, 1.0);
    let offset = vec4<f32>(disc * v.i_position_radius.w, 0.0, 0.0);
    var out: VertexOutput;
    out.clip_position = view.clip_from_view * (center + offset);
    out.color = v.i_color;
    out.disc = disc;
    return out;
}

@fragment
fn fragment(in: VertexOutput) -> @location(0) vec4<f32> {
    let r2 = dot(in.disc, in.disc);
    if r2 > 1.0 {
        discard;
    }
    // A darker rim separates overlapping splats of the same colour.
    let shade = select(1.0, 0.55, r2 > 0.72);
    return vec4<f32>(in.color.rgb * shade, 1.0);
}
