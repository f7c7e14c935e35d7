//! CLIP (ViT-B/32 and kin). This part holds the image preprocessing, which is
//! pure CPU work and must match Hugging Face's `CLIPImageProcessor` to the
//! pixel; the model itself (Burn, wgpu) is built on top of it.

pub mod preprocess;
