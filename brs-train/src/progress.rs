//! How the `brs-train` command shows a run (a module of the binary: the library only reports
//! events): notices first, then a progress bar with losses and ETA on a terminal, or plain lines
//! otherwise, with a line of losses whenever sample grids are written.

use brs_train::{Observer, TrainEvent};
use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar (hidden when stderr is not a terminal) that renders a run's events.
pub(crate) struct Progress {
    bar: ProgressBar,
}

/// A bar drawing `template`, or a hidden one when `draw` is false.
pub(crate) fn bar(draw: bool, len: u64, template: &str) -> ProgressBar {
    let bar = if draw {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

impl Progress {
    pub(crate) fn new(draw: bool) -> Self {
        Progress {
            bar: bar(
                draw,
                0,
                "{elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
            ),
        }
    }

    /// Prints a line above the bar (or on its own when there is no bar).
    fn line(&self, text: String) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress {
    fn event(&mut self, event: &TrainEvent<'_>) {
        match event {
            // Notices come before the bar is drawn.
            TrainEvent::Notice(notice) => eprintln!("{notice}"),
            TrainEvent::Started { iteration, total } => {
                self.bar.set_length(*total);
                self.bar.set_position(*iteration);
                self.bar.reset_eta();
            }
            TrainEvent::Iteration {
                iteration, losses, ..
            } => {
                self.bar.set_position(*iteration);
                self.bar.set_message(format!(
                    "d {:.3} g {:.3} (cyc {:.3} cam {:.3})",
                    losses.d_loss, losses.g_loss, losses.g_cycle, losses.g_cam
                ));
            }
            TrainEvent::Samples {
                iteration,
                total,
                losses,
                ..
            } => self.line(format!(
                "[{iteration}/{total}] d_loss {:.4} g_loss {:.4} adv {:.4} cycle {:.4} identity {:.4} cam {:.4}",
                losses.d_loss,
                losses.g_loss,
                losses.g_adv,
                losses.g_cycle,
                losses.g_identity,
                losses.g_cam
            )),
            TrainEvent::Checkpoint { .. } => {}
            TrainEvent::DecayFitted { iteration, total } => {
                self.bar.set_length(*total);
                self.line(format!(
                    "half the time budget gone at iteration {iteration}: the learning rate falls \
                     linearly to 0 by iteration {total} (the paper's decay over a run's second half)"
                ));
            }
        }
    }
}
