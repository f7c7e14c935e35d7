//! End-to-end tests: the library pipeline and the `embedscope` command on real
//! MNIST digits (`assets/mnist-2k`), hostile files and planted duplicates; CLIP
//! on its fixtures; `model fetch` against a local server that speaks the
//! Hugging Face Hub's protocol; the viewer under Xvfb.
//! One test binary on purpose: each binary links the whole dependency tree.

mod cli;
#[cfg(feature = "clip")]
mod clip;
#[cfg(feature = "clip")]
mod fetch_protocol;
#[cfg(feature = "clip")]
mod fetch_support;
mod looks;
mod pipeline;
mod support;
#[cfg(feature = "viewer")]
mod viewer;
