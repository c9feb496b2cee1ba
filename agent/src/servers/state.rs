//! The server state machine as one explicit transition table.
//!
//! A server's state only changes through [`next`]: a [`Trigger`] (a command beginning, or
//! Docker reporting a run that began or ended) applied to the current state gives a
//! [`Step`] — move to a state, or stay — or an [`IllegalTransition`]. Commands set the
//! transitional states (`starting`, `stopping`, `restarting`), Docker's events settle the
//! final ones. Rows marked *late* exist because Docker's events arrive after the fact: a
//! command that just inspected the container may find our state still describing the
//! previous run.

use proto::ServerState::{self, *};

/// What moves a server from one state to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A start command begins (the container is not running).
    Start,
    /// Docker shows the container running.
    Run,
    /// A stop (or delete) command begins on a running container.
    Stop,
    /// A restart command begins on a running container.
    Restart,
    /// Signalling a stop failed: the container still runs.
    StopFailed,
    /// A start failed before the container ran.
    StartFailed,
    /// The container's run ended (or it never ran).
    Exited(Exit),
    /// The container is gone.
    Removed,
}

/// How a run ended, as far as the state is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exit code 0, or an exit the operator asked for.
    Clean,
    /// A non-zero exit or an OOM kill nobody asked for.
    Crash,
    /// The container exists but never ran.
    NeverRan,
}

impl Exit {
    fn state(self) -> ServerState {
        match self {
            Exit::Clean => Stopped,
            Exit::Crash => Crashed,
            Exit::NeverRan => Created,
        }
    }
}

/// The verdict of the table for one trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Move to this state (one `server_status_changed` event).
    To(ServerState),
    /// Legal, nothing changes (no event).
    Stay,
}

/// A trigger the table does not allow from the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a server that is {}", .trigger.verb(), .from.as_str())]
pub struct IllegalTransition {
    pub from: ServerState,
    pub trigger: Trigger,
}

impl Trigger {
    fn verb(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Run => "mark running",
            Trigger::Stop => "stop",
            Trigger::Restart => "restart",
            Trigger::StopFailed => "abandon the stop of",
            Trigger::StartFailed => "abandon the start of",
            Trigger::Exited(_) => "record the exit of",
            Trigger::Removed => "remove",
        }
    }
}

/// The transition table. Anything not listed is illegal.
pub fn next(from: ServerState, trigger: Trigger) -> Result<Step, IllegalTransition> {
    use Step::{Stay, To};
    use Trigger as T;
    let step = match (from, trigger) {
        // A start command, after Docker said the container is not running.
        (Created | Stopped | Crashed | Unknown, T::Start) => To(Starting),
        (Starting, T::Start) => Stay,
        // late: the exit of the previous run is not processed yet.
        (Running | Stopping, T::Start) => To(Starting),

        // Docker shows the container running.
        (Starting | Restarting | Created | Stopped | Crashed | Unknown, T::Run) => To(Running),
        (Running, T::Run) => Stay,
        // A stop is under way (its exit settles the state), or the server is gone.
        (Stopping | Deleted, T::Run) => Stay,

        // A stop or restart command, after Docker said the container is running.
        (Running | Starting | Unknown, T::Stop) => To(Stopping),
        // late: the container's start is not processed yet.
        (Created | Stopped | Crashed, T::Stop) => To(Stopping),
        (Stopping, T::Stop) => Stay,
        (Running | Starting | Unknown, T::Restart) => To(Restarting),
        (Created | Stopped | Crashed, T::Restart) => To(Restarting),
        (Restarting, T::Restart) => Stay,

        // The stop's signal could not be sent: the container keeps running.
        (Stopping | Restarting, T::StopFailed) => To(Running),
        // Docker's events settled the state meanwhile: theirs wins.
        (Stopped | Crashed | Created | Deleted, T::StopFailed) => Stay,
        // The start never got the container running.
        (Starting | Restarting, T::StartFailed) => To(Stopped),
        // Docker's events settled the state meanwhile: theirs wins.
        (Running | Stopped | Crashed | Created | Deleted, T::StartFailed) => Stay,

        // A run ended.
        (
            Running | Starting | Stopping | Restarting | Created | Stopped | Crashed | Unknown,
            T::Exited(exit),
        ) => {
            if from == exit.state() {
                Stay
            } else {
                To(exit.state())
            }
        }
        // A late exit of a server already removed.
        (Deleted, T::Exited(_)) => Stay,

        (Deleted, T::Removed) => Stay,
        (_, T::Removed) => To(Deleted),

        (from, trigger) => return Err(IllegalTransition { from, trigger }),
    };
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ServerState; 9] = [
        Created, Starting, Running, Stopping, Stopped, Crashed, Restarting, Deleted, Unknown,
    ];

    #[test]
    fn the_lifecycle_of_a_server() {
        let path = [
            (Created, Trigger::Start, Starting),
            (Starting, Trigger::Run, Running),
            (Running, Trigger::Restart, Restarting),
            (Restarting, Trigger::Run, Running),
            (Running, Trigger::Stop, Stopping),
            (Stopping, Trigger::Exited(Exit::Clean), Stopped),
            (Stopped, Trigger::Start, Starting),
            (Starting, Trigger::Exited(Exit::Crash), Crashed),
            (Crashed, Trigger::Start, Starting),
            (Starting, Trigger::StartFailed, Stopped),
            (Stopped, Trigger::Removed, Deleted),
        ];
        for (from, trigger, to) in path {
            assert_eq!(
                next(from, trigger),
                Ok(Step::To(to)),
                "{from:?} {trigger:?}"
            );
        }
    }

    #[test]
    fn illegal_transitions_are_typed_errors() {
        for trigger in [Trigger::Start, Trigger::Stop, Trigger::Restart] {
            let e = next(Deleted, trigger).unwrap_err();
            assert_eq!(
                e,
                IllegalTransition {
                    from: Deleted,
                    trigger
                }
            );
            assert!(e.to_string().contains("deleted"), "{e}");
        }
        // A restart in progress is not restarted by a start, and nothing but a stop aborts.
        assert!(next(Restarting, Trigger::Start).is_err());
        assert!(next(Running, Trigger::StopFailed).is_err());
        assert!(next(Stopping, Trigger::StartFailed).is_err());
        assert!(next(Stopping, Trigger::Restart).is_err());
    }

    #[test]
    fn removal_is_possible_from_everywhere_and_final() {
        for from in ALL {
            let step = next(from, Trigger::Removed).unwrap();
            if from == Deleted {
                assert_eq!(step, Step::Stay);
            } else {
                assert_eq!(step, Step::To(Deleted));
            }
        }
        for from in ALL {
            assert!(next(from, Trigger::Exited(Exit::Clean)).is_ok());
        }
    }

    #[test]
    fn staying_never_emits_and_moving_always_changes_state() {
        let triggers = [
            Trigger::Start,
            Trigger::Run,
            Trigger::Stop,
            Trigger::Restart,
            Trigger::StopFailed,
            Trigger::StartFailed,
            Trigger::Exited(Exit::Clean),
            Trigger::Exited(Exit::Crash),
            Trigger::Exited(Exit::NeverRan),
            Trigger::Removed,
        ];
        for from in ALL {
            for trigger in triggers {
                if let Ok(Step::To(to)) = next(from, trigger) {
                    assert_ne!(from, to, "{from:?} {trigger:?} moves to itself");
                }
            }
        }
    }
}
