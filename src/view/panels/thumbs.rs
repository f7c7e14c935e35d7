//! Thumbnails in the panel's galleries: read from the thumbnail store by a
//! background [`Worker`] in small batches (only the ones on screen), kept as
//! egui textures in a bounded cache (least recently used out first), so a
//! gallery of 100k images scrolls without loading 100k textures.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use bevy::prelude::*;
use bevy_egui::egui;

use crate::cache::thumbnails::ThumbnailStore;
use crate::decode::{ContentHash, Thumbnail};
use crate::pipeline::Analysis;
use crate::view::tasks::{RequestId, Worker};
use crate::view::thumbnails::THUMBNAIL_SIZE;

/// Most thumbnails kept as textures (64 px RGBA: 16 KB each, 32 MB in all).
const CACHE_LIMIT: usize = 2000;
/// Thumbnails read per request: a batch is a few milliseconds of work.
const BATCH: usize = 48;

struct Request {
    store: PathBuf,
    hashes: Vec<ContentHash>,
}

type Found = Vec<(ContentHash, Thumbnail)>;

#[derive(Resource)]
pub struct PanelThumbs {
    /// The store of the analysis shown.
    store: Option<PathBuf>,
    worker: Worker<Request, Found>,
    /// Requests on their way, with what each asked for.
    in_flight: HashMap<RequestId, Vec<ContentHash>>,
    /// Read, not yet turned into textures (that needs the egui context).
    arrived: Found,
    textures: HashMap<ContentHash, (egui::TextureHandle, u64)>,
    /// Asked for this frame and not cached.
    wanted: Vec<ContentHash>,
    wanted_set: HashSet<ContentHash>,
    /// Not in the store (or unreadable): not asked for again.
    missing: HashSet<ContentHash>,
    frame: u64,
}

impl Default for PanelThumbs {
    fn default() -> Self {
        let mut open: Option<(PathBuf, ThumbnailStore)> = None;
        let worker = Worker::start("panel-thumbnails", move |request: Request, cancel| {
            // One connection per thread, kept while the store stays the same.
            if open.as_ref().is_none_or(|(path, _)| *path != request.store) {
                open = Some((request.store.clone(), ThumbnailStore::open(&request.store)?));
            }
            let (_, store) = open.as_ref().expect("opened above");
            cancel.check()?;
            let mut found = store.get_many(&request.hashes, THUMBNAIL_SIZE)?;
            Ok(request
                .hashes
                .iter()
                .filter_map(|h| found.remove(h).map(|t| (*h, t)))
                .collect())
        });
        Self {
            store: None,
            worker,
            in_flight: HashMap::new(),
            arrived: Vec::new(),
            textures: HashMap::new(),
            wanted: Vec::new(),
            wanted_set: HashSet::new(),
            missing: HashSet::new(),
            frame: 0,
        }
    }
}

impl PanelThumbs {
    /// Follows the analysis shown: another store means other thumbnails.
    pub fn follow(&mut self, analysis: Option<&Analysis>) {
        let store = analysis.and_then(|a| a.folder.thumbnail_store.clone());
        if store != self.store {
            self.store = store;
            self.textures.clear();
            self.missing.clear();
            self.arrived.clear();
        }
    }

    /// The texture of image `i`'s thumbnail, or `None` while it is read
    /// (it is asked for) or when there is none.
    pub fn get(&mut self, a: &Analysis, i: usize) -> Option<egui::TextureId> {
        let hash = a.folder.images.get(i)?.hash;
        if let Some((handle, used)) = self.textures.get_mut(&hash) {
            *used = self.frame;
            return Some(handle.id());
        }
        if self.store.is_some() && !self.missing.contains(&hash) && self.wanted_set.insert(hash) {
            self.wanted.push(hash);
        }
        None
    }

    /// Once a frame, after the panel: makes textures of what arrived, drops
    /// the least recently used beyond the limit, asks for what was missing.
    pub fn end_frame(&mut self, ctx: &egui::Context) {
        for (hash, t) in self.arrived.drain(..) {
            let image = egui::ColorImage::from_rgba_unmultiplied(
                [t.width as usize, t.height as usize],
                &t.rgba,
            );
            let handle = ctx.load_texture(
                format!("thumb-{}", hex(&hash)),
                image,
                egui::TextureOptions::LINEAR,
            );
            self.textures.insert(hash, (handle, self.frame));
        }
        evict(&mut self.textures, CACHE_LIMIT);
        if let Some(store) = &self.store
            && !self.wanted.is_empty()
            && !self.worker.busy()
            && self.in_flight.is_empty()
        {
            let hashes: Vec<ContentHash> = self.wanted.iter().take(BATCH).copied().collect();
            let id = self.worker.request(Request {
                store: store.clone(),
                hashes: hashes.clone(),
            });
            self.in_flight.insert(id, hashes);
        }
        self.wanted.clear();
        self.wanted_set.clear();
        self.frame += 1;
    }
}

/// Drops the least recently used entries until at most `limit` remain.
fn evict<V>(cache: &mut HashMap<ContentHash, (V, u64)>, limit: usize) {
    if cache.len() <= limit {
        return;
    }
    let mut ages: Vec<u64> = cache.values().map(|(_, used)| *used).collect();
    let cut = cache.len() - limit;
    ages.select_nth_unstable(cut - 1);
    let oldest_kept = ages[cut - 1];
    let mut to_drop = cut;
    cache.retain(|_, (_, used)| {
        if *used <= oldest_kept && to_drop > 0 {
            to_drop -= 1;
            false
        } else {
            true
        }
    });
}

fn hex(hash: &ContentHash) -> String {
    hash.0[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn receive_thumbnails(mut thumbs: ResMut<PanelThumbs>) {
    for (id, outcome) in thumbs.worker.poll() {
        let asked = thumbs.in_flight.remove(&id).unwrap_or_default();
        match outcome {
            Ok(found) => {
                let got: HashSet<ContentHash> = found.iter().map(|(h, _)| *h).collect();
                thumbs
                    .missing
                    .extend(asked.into_iter().filter(|h| !got.contains(h)));
                thumbs.arrived.extend(found);
            }
            Err(err) => {
                // Not worth more than a line: the gallery shows names instead.
                warn!("panel thumbnails could not be read: {err}");
                thumbs.missing.extend(asked);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_keeps_the_most_recently_used() {
        let mut cache: HashMap<ContentHash, ((), u64)> = (0..10u8)
            .map(|k| (ContentHash([k; 32]), ((), k as u64)))
            .collect();
        evict(&mut cache, 4);
        let mut kept: Vec<u64> = cache.values().map(|(_, used)| *used).collect();
        kept.sort();
        assert_eq!(kept, [6, 7, 8, 9]);
        evict(&mut cache, 10);
        assert_eq!(cache.len(), 4);
    }
}
