//! The budget of one jq evaluation: steps, wall-clock time and native stack, metered from
//! inside jaq's evaluator.
//!
//! jaq has no fuel, interrupt or recursion limit of its own, and a Rust stack overflow aborts
//! the whole process, so a thread and a timeout cannot stop a runaway program (`def f: 1 + f;
//! f` aborts; `last(range(1e15))` burns a core forever). The meter hooks the one call jaq makes
//! at the start of every term it evaluates, `HasLut::lut` (in `Id::run`, `Id::paths` and
//! `Id::update`, and before every native call): the program runs over our [`Metered`] data,
//! whose `lut()` counts a step, reads the clock every [`CLOCK_EVERY`] steps and measures how much
//! native stack the evaluation has used. No fork of jaq is needed; the unit tests of
//! `mapping` (`def f: f; f`, `def f: 1 + f; f`, …) fail if an upgrade of jaq ever stops calling
//! `lut()` there.
//!
//! Over budget, the meter unwinds with a private payload ([`Exceeded`]) through
//! `std::panic::resume_unwind`: jq's `try`/`catch` only catches jq errors, so a program cannot
//! catch its own budget, and `resume_unwind` skips the panic hook (no "thread panicked" noise).
//! [`metered`] catches it and returns the [`Limit`] that was hit.
//!
//! Must never: meter anything outside [`metered`] (the meter is off otherwise), or be used on a
//! thread whose stack is smaller than the stack allowance plus [`super::pool`]'s margin.

// The meter stops a program by unwinding; with `panic = "abort"` every stop would kill the hub.
#[cfg(panic = "abort")]
compile_error!("concord-engine's jq budget unwinds: build with panic = \"unwind\" (the default)");

use jaq_core::data::HasLut;
use jaq_core::{DataT, Lut};
use jaq_json::Val;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Read the clock once every this many steps (a step costs nanoseconds; the clock ~25 ns).
pub(crate) const CLOCK_EVERY: u64 = 256;

/// How much one jq evaluation may do. Set per hub by `[engine]` (`jq_steps`, `jq_timeout`,
/// `jq_max_bytes`); every mapping and filter is compiled with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most evaluation steps (one per jq term evaluated, per value `range` produces).
    pub steps: u64,
    /// Longest wall-clock time of one evaluation.
    pub timeout: Duration,
    /// Largest input, and largest output, in (approximately) serialized JSON bytes.
    pub max_bytes: usize,
}

impl Budget {
    /// 1,000,000 steps: a few hundred milliseconds of jaq on a small machine, and some
    /// hundred times what mapping an order of a hundred lines takes.
    pub const DEFAULT_STEPS: u64 = 1_000_000;
    /// One second.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// 4 MiB, four times the default webhook body limit.
    pub const DEFAULT_MAX_BYTES: usize = 4 << 20;
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            steps: Self::DEFAULT_STEPS,
            timeout: Self::DEFAULT_TIMEOUT,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// Which limit stopped (or refused) an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// More steps than `[engine] jq_steps`.
    Steps(u64),
    /// Longer than `[engine] jq_timeout`.
    Time(Duration),
    /// Recursion deeper than the native stack allowance (bytes).
    Stack(usize),
    /// The input is larger than `[engine] jq_max_bytes`; refused before evaluation.
    InputBytes(usize),
    /// The input nests deeper than [`super::MAX_DEPTH`] levels; refused before evaluation.
    InputDepth(usize),
    /// The output is larger than `[engine] jq_max_bytes`.
    OutputBytes(usize),
    /// The output nests deeper than [`super::MAX_DEPTH`] levels (the store could not read it
    /// back).
    OutputDepth(usize),
}

/// Reads after "jq program `NAME` ".
impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Steps(n) => write!(f, "stopped after {n} steps (engine.jq_steps)"),
            Limit::Time(d) => write!(
                f,
                "stopped after running {} (engine.jq_timeout)",
                humantime::format_duration(*d)
            ),
            Limit::Stack(bytes) => write!(
                f,
                "stopped: it recursed deeper than {} MiB of stack",
                bytes >> 20
            ),
            Limit::InputBytes(max) => write!(
                f,
                "not run: its input is larger than {max} bytes of JSON (engine.jq_max_bytes)"
            ),
            Limit::InputDepth(max) => {
                write!(f, "not run: its input nests deeper than {max} levels")
            }
            Limit::OutputBytes(max) => write!(
                f,
                "failed: its output is larger than {max} bytes of JSON (engine.jq_max_bytes)"
            ),
            Limit::OutputDepth(max) => {
                write!(f, "failed: its output nests deeper than {max} levels")
            }
        }
    }
}

/// The unwinding payload of a stop. Private: nothing but [`metered`] can recognise it.
enum Exceeded {
    Limit(Limit),
    /// Nobody waits for the result any more.
    Abandoned,
}

/// The meter of the evaluation running on this thread.
struct Meter {
    armed: Cell<bool>,
    steps: Cell<u64>,
    steps_left: Cell<u64>,
    timeout: Cell<Duration>,
    deadline: Cell<Option<Instant>>,
    stack_base: Cell<usize>,
    stack_max: Cell<usize>,
    /// Set when the caller stopped waiting (its future was dropped).
    abandoned: RefCell<Option<Arc<AtomicBool>>>,
}

thread_local! {
    static METER: Meter = const {
        Meter {
            armed: Cell::new(false),
            steps: Cell::new(0),
            steps_left: Cell::new(0),
            timeout: Cell::new(Duration::ZERO),
            deadline: Cell::new(None),
            stack_base: Cell::new(0),
            stack_max: Cell::new(0),
            abandoned: RefCell::new(None),
        }
    };
}

/// The address of a local of the caller's frame: where the stack is now.
#[inline(always)]
fn stack_position() -> usize {
    let here = 0u8;
    std::hint::black_box(&here) as *const u8 as usize
}

/// Count one step; unwind with [`Exceeded`] when a limit is hit.
#[inline]
pub(crate) fn tick() {
    METER.with(|m| {
        if !m.armed.get() {
            return;
        }
        let left = m.steps_left.get();
        if left == 0 {
            stop(m, Limit::Steps(m.steps.get()));
        }
        m.steps_left.set(left - 1);
        if left % CLOCK_EVERY == 0 {
            if m.deadline.get().is_some_and(|d| Instant::now() >= d) {
                stop(m, Limit::Time(m.timeout.get()));
            }
            let abandoned = m
                .abandoned
                .borrow()
                .as_ref()
                .is_some_and(|a| a.load(Ordering::Relaxed));
            if abandoned {
                m.armed.set(false);
                std::panic::resume_unwind(Box::new(Exceeded::Abandoned))
            }
        }
        // The stack grows down on every platform we build for; `abs_diff` also reads right
        // where it grows up.
        if m.stack_base.get().abs_diff(stack_position()) > m.stack_max.get() {
            stop(m, Limit::Stack(m.stack_max.get()));
        }
    })
}

#[cold]
fn stop(m: &Meter, limit: Limit) -> ! {
    // Disarmed first: nothing that runs while unwinding may stop a second time (that would
    // abort).
    m.armed.set(false);
    std::panic::resume_unwind(Box::new(Exceeded::Limit(limit)))
}

/// Why [`metered`] did not return the closure's value.
#[derive(Debug)]
pub(crate) enum Stopped {
    /// A limit was hit.
    Budget(Limit),
    /// The caller stopped waiting for the result.
    Abandoned,
    /// Something in jaq panicked (a bug there); the message, when it has one.
    Panic(String),
}

/// Run `f` (one jq evaluation) under `budget`, with at most `stack_max` bytes of native stack
/// below this call; stop early once `abandoned` is set. The meter is armed only for the
/// duration of `f`.
pub(crate) fn metered<R>(
    budget: &Budget,
    stack_max: usize,
    abandoned: Arc<AtomicBool>,
    f: impl FnOnce() -> R,
) -> Result<R, Stopped> {
    METER.with(|m| {
        *m.abandoned.borrow_mut() = Some(abandoned);
        m.steps.set(budget.steps);
        m.steps_left.set(budget.steps);
        m.timeout.set(budget.timeout);
        m.deadline.set(Instant::now().checked_add(budget.timeout));
        m.stack_base.set(stack_position());
        m.stack_max.set(stack_max);
        m.armed.set(true);
    });
    // Everything `f` touches is created and dropped inside it (jaq values are `Rc`s of this
    // evaluation); nothing observable is left half-updated by an unwind.
    let out = catch_unwind(AssertUnwindSafe(f));
    METER.with(|m| {
        m.armed.set(false);
        *m.abandoned.borrow_mut() = None;
    });
    out.map_err(stopped)
}

fn stopped(payload: Box<dyn Any + Send>) -> Stopped {
    match payload.downcast::<Exceeded>() {
        Ok(e) => match *e {
            Exceeded::Limit(limit) => Stopped::Budget(limit),
            Exceeded::Abandoned => Stopped::Abandoned,
        },
        Err(other) => Stopped::Panic(
            other
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| other.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into()),
        ),
    }
}

/// jaq's data for our programs: jq values ([`Val`]) and the program's lookup table, behind
/// the meter.
pub(crate) struct Metered;

impl DataT for Metered {
    type V<'a> = Val;
    type Data<'a> = MeteredLut<'a>;
}

/// The lookup table of the running program. jaq asks for it at the start of every term it
/// evaluates: that is the step.
#[derive(Clone)]
pub(crate) struct MeteredLut<'a>(pub(crate) &'a Lut<Metered>);

impl<'a> HasLut<'a, Metered> for MeteredLut<'a> {
    #[inline]
    fn lut(&self) -> &'a Lut<Metered> {
        tick();
        self.0
    }
}
