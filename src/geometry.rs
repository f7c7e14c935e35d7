//! Points in the 3D map, shared by every stage below and above the layout
//! (reduce, clusters, quality scores, progress previews, the viewer).

pub type Point3 = [f32; 3];

#[inline]
pub fn sub(a: Point3, b: Point3) -> Point3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

#[inline]
pub fn norm2(v: Point3) -> f32 {
    v[0] * v[0] + v[1] * v[1] + v[2] * v[2]
}

/// Squared Euclidean distance.
#[inline]
pub fn dist2(a: Point3, b: Point3) -> f32 {
    norm2(sub(a, b))
}
