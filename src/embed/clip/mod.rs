//! CLIP (ViT-B/32 and kin). This part holds the CPU side, which must match
//! Hugging Face exactly: the image preprocessing (`CLIPImageProcessor`) and the
//! text tokenizer (`CLIPTokenizer`). The model itself (Burn, wgpu) is built on
//! top of them.

pub mod preprocess;
pub mod tokenizer;
