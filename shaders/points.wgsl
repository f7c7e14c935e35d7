// Camera-facing round splats, one instance per image.
//
// The mesh is a unit quad (corners at ±0.5). Each instance has two parts, in
// two buffers: its world position, and its style (sRGB colour with opacity,
// radius in world units, smallest radius on screen in physical pixels). The
// quad is expanded in view space so it always faces the camera and keeps a
// world-space size: near points look bigger, which reads as depth. A splat
// smaller than `min_pixels` on screen is drawn at that size instead, with its
// opacity scaled by the area it really covers, so far and dense regions
// keep their brightness instead of vanishing or saturating.
//
// The picking code (src/view/picking.rs, src/view/spatial.rs) tests the same
// disc, max(world radius, min_pixels), so what you see is what you hit.
//
// BLENDED (dense clouds): straight alpha over what is behind, no depth
// writes. Otherwise opaque discs with a darker rim, depth-tested.

#import bevy_pbr::mesh_view_bindings::view

struct Vertex {
    @location(0) corner: vec3<f32>,
    @location(3) i_position: vec3<f32>,
    @location(4) i_color: vec4<f32>,
    @location(5) i_radius: f32,
    @location(6) i_min_pixels: f32,
};

struct VertexOutput {
    @builtin(position) clip_position: vec4<f32>,
    // Linear colour; alpha = opacity × covered area.
    @location(0) color: vec4<f32>,
    // -1..1 across the quad: the fragment stage cuts the disc out of it.
    @location(1) disc: vec2<f32>,
};

// The layout is scaled to a root-mean-square radius of 4 world units (see
// src/view/layout.rs). Zoomed in, splats nearer than NEAR_OPAQUE are drawn
// opaque, fading to the cloud's own opacity by FAR_TRANSLUCENT: close up the
// points are few and should read as solid.
const NEAR_OPAQUE: f32 = 1.5;
const FAR_TRANSLUCENT: f32 = 6.0;

fn srgb_to_linear(c: vec3<f32>) -> vec3<f32> {
    let low = c / 12.92;
    let high = pow((c + vec3(0.055)) / 1.055, vec3(2.4));
    return select(high, low, c <= vec3(0.04045));
}

@vertex
fn vertex(v: Vertex) -> VertexOutput {
    var out: VertexOutput;
    let disc = v.corner.xy * 2.0;
    out.disc = disc;
    out.color = vec4<f32>(0.0);
    if v.i_radius <= 0.0 {
        // Hidden: all four corners on one spot, nothing is rasterised.
        out.clip_position = vec4<f32>(0.0, 0.0, 0.0, 1.0);
        return out;
    }
    let center = view.view_from_world * vec4<f32>(v.i_position, 1.0);
    let depth = max(-center.z, 1e-4);
    // Physical pixels per world unit at this depth.
    let pixels_per_unit = view.clip_from_view[1][1] / depth * view.viewport.w * 0.5;
    let natural = v.i_radius * pixels_per_unit;
    let shown = max(natural, v.i_min_pixels);
    let radius = shown / pixels_per_unit;
    var alpha = v.i_color.a;
#ifdef BLENDED
    let t = clamp((FAR_TRANSLUCENT - depth) / (FAR_TRANSLUCENT - NEAR_OPAQUE), 0.0, 1.0);
    alpha = mix(alpha, 1.0, t * t * (3.0 - 2.0 * t));
    let covered = natural / shown;
    alpha = alpha * covered * covered;
#endif
    out.color = vec4<f32>(srgb_to_linear(v.i_color.rgb), alpha);
    let offset = vec4<f32>(disc * radius, 0.0, 0.0);
    out.clip_position = view.clip_from_view * (center + offset);
    return out;
}

@fragment
fn fragment(in: VertexOutput) -> @location(0) vec4<f32> {
    let r2 = dot(in.disc, in.disc);
    if r2 > 1.0 {
        discard;
    }
#ifdef BLENDED
    return in.color;
#else
    // A darker rim separates overlapping splats of the same colour.
    let shade = select(1.0, 0.55, r2 > 0.72);
    return vec4<f32>(in.color.rgb * shade, 1.0);
#endif
}
