//! Progress bars on the terminal: one indicatif bar per pipeline stage.

use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use embedscope::progress::{ProgressEvent, ProgressSink, Stage};

pub struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<Vec<(Stage, ProgressBar)>>,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        Self {
            multi: (!quiet).then(MultiProgress::new),
            bars: Mutex::new(Vec::new()),
        }
    }

    pub fn clear(&self) {
        for (_, bar) in self.bars.lock().unwrap().iter() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }

    fn bar(&self, stage: Stage, total: Option<u64>) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let mut bars = self.bars.lock().unwrap();
        if let Some((_, bar)) = bars.iter().find(|(s, _)| *s == stage) {
            // A stage can learn its size late (the layout knows its epochs only
            // once the method starts): the spinner becomes a bar.
            if let Some(total) = total {
                bar.set_length(total);
                bar.set_style(bar_style());
            }
            return Some(bar.clone());
        }
        let bar = match total {
            Some(total) => multi.add(ProgressBar::new(total)).with_style(bar_style()),
            None => multi.add(ProgressBar::new_spinner()).with_style(
                ProgressStyle::with_template("{prefix:>12} {spinner} {pos} {elapsed_precise}")
                    .expect("a valid template"),
            ),
        };
        bar.set_prefix(stage.label());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bars.push((stage, bar.clone()));
        Some(bar)
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}")
        .expect("a valid template")
        .progress_chars("=> ")
}

/// The style of a download bar (`model fetch`).
#[cfg(feature = "clip")]
pub fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>26} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .expect("a valid template")
    .progress_chars("=> ")
}

impl ProgressSink for Bars {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::Started { stage, total } => {
                self.bar(stage, total);
            }
            ProgressEvent::Advanced { stage, done } => {
                if let Some(bar) = self.bar(stage, None) {
                    bar.set_position(done);
                }
            }
            ProgressEvent::Finished {
                stage,
                seconds,
                summary,
            } => {
                if let Some(bar) = self.bar(stage, None) {
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:>12} {msg}")
                            .expect("a valid template"),
                    );
                    bar.finish_with_message(format!("{summary} ({seconds:.2}s)"));
                }
            }
            ProgressEvent::Warning(text) => match &self.multi {
                Some(multi) => {
                    let _ = multi.println(format!("warning: {text}"));
                }
                None => eprintln!("warning: {text}"),
            },
            ProgressEvent::LayoutPreview(_) => {}
        }
    }
}
