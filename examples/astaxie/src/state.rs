//! The invitation's state machine, as a pure function of one object and the time: what
//! status an `AstaXie` should have and when to look at it again. Level-triggered: it
//! reads the object as it is now, never the event that brought it here.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::resource::{AstaXie, AstaXieStatus, State};

/// What the controller should do with one `AstaXie`.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The status to write through the status subresource; `None` when the object's
    /// status already is what it should be.
    pub write: Option<AstaXieStatus>,
    /// Look at the object again after this long even if nothing changes: the guest is
    /// still thinking the invitation over.
    pub recheck_after: Option<Duration>,
}

/// The message of a freshly sent invitation.
pub fn invitation(name: &str, language: &str) -> String {
    format!("Invitation sent to {name}, who speaks {language}")
}

/// The message once the guest said yes; it depends on the spec, so it follows spec edits.
pub fn acceptance(name: &str, language: &str, handsome: bool) -> String {
    if handsome {
        format!("{name} accepted and will speak {language} on stage, handsome as ever")
    } else {
        format!("{name} accepted and will speak {language} on stage; the slides will be handsome instead")
    }
}

/// Decides the status `ax` should have at `now`, when the guest takes `think_time` to
/// accept an invitation:
///
/// - no state yet: send the invitation (`Invited`, `invitedAt` = now);
/// - `Invited` for less than `think_time`: keep waiting (refreshing the message if the
///   spec changed) and look again when the time is up;
/// - `Invited` for `think_time` or longer: `Accepted`, with a message that depends on
///   `spec.handsome`;
/// - `Accepted`: stay accepted, with the message of the current spec.
///
/// `observedGeneration` always records the generation the decision was made from. An
/// object that already has the right status gets no write.
pub fn plan(ax: &AstaXie, now: Timestamp, think_time: Duration) -> Plan {
    let name = ax.name_any();
    let spec = &ax.spec;
    let current = ax.status.clone().unwrap_or_default();
    let generation = ax.metadata.generation;
    let think = SignedDuration::try_from(think_time).unwrap_or(SignedDuration::MAX);

    let (desired, recheck_after) = match (current.state, &current.invited_at) {
        (Some(State::Accepted), _) => (
            AstaXieStatus {
                state: Some(State::Accepted),
                message: Some(acceptance(&name, &spec.language, spec.handsome)),
                invited_at: current.invited_at.clone(),
                observed_generation: generation,
            },
            None,
        ),
        (Some(State::Invited), Some(Time(invited_at))) => {
            let thought = now.duration_since(*invited_at);
            if thought >= think {
                (
                    AstaXieStatus {
                        state: Some(State::Accepted),
                        message: Some(acceptance(&name, &spec.language, spec.handsome)),
                        invited_at: Some(Time(*invited_at)),
                        observed_generation: generation,
                    },
                    None,
                )
            } else {
                let remaining = Duration::try_from(think - thought).unwrap_or(think_time);
                (
                    AstaXieStatus {
                        state: Some(State::Invited),
                        message: Some(invitation(&name, &spec.language)),
                        invited_at: Some(Time(*invited_at)),
                        observed_generation: generation,
                    },
                    Some(remaining),
                )
            }
        }
        // Never invited, or invited without a date (a status edited by hand): invite now.
        (None, _) | (Some(State::Invited), None) => (
            AstaXieStatus {
                state: Some(State::Invited),
                message: Some(invitation(&name, &spec.language)),
                invited_at: Some(Time(now)),
                observed_generation: generation,
            },
            Some(think_time),
        ),
    };
    let write = (ax.status.as_ref() != Some(&desired)).then_some(desired);
    Plan { write, recheck_after }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::AstaXieSpec;

    const THINK: Duration = Duration::from_secs(3);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn guest(language: &str, handsome: bool, generation: i64, status: Option<AstaXieStatus>) -> AstaXie {
        let mut ax = AstaXie::new("asta", AstaXieSpec { language: language.into(), handsome });
        ax.metadata.namespace = Some("default".into());
        ax.metadata.generation = Some(generation);
        ax.status = status;
        ax
    }

    fn status(state: State, message: &str, invited_at: Option<i64>, generation: i64) -> AstaXieStatus {
        AstaXieStatus {
            state: Some(state),
            message: Some(message.into()),
            invited_at: invited_at.map(|s| Time(at(s))),
            observed_generation: Some(generation),
        }
    }

    #[test]
    fn a_new_guest_is_invited_and_rechecked_after_the_think_time() {
        let p = plan(&guest("go", true, 1, None), at(0), THINK);
        assert_eq!(
            p.write,
            Some(status(State::Invited, "Invitation sent to asta, who speaks go", Some(0), 1))
        );
        assert_eq!(p.recheck_after, Some(THINK));
    }

    #[test]
    fn the_state_machine_table() {
        let invited = |g| status(State::Invited, "Invitation sent to asta, who speaks go", Some(0), g);
        let accepted_handsome = "asta accepted and will speak go on stage, handsome as ever";
        let accepted_plain = "asta accepted and will speak go on stage; the slides will be handsome instead";
        // (case, object, now in seconds, expected write, expected recheck)
        type Case = (&'static str, AstaXie, i64, Option<AstaXieStatus>, Option<Duration>);
        let cases: Vec<Case> = vec![
            (
                "still thinking: nothing to write",
                guest("go", true, 1, Some(invited(1))),
                1,
                None,
                Some(Duration::from_secs(2)),
            ),
            (
                "think time over: accepted, handsome",
                guest("go", true, 1, Some(invited(1))),
                3,
                Some(status(State::Accepted, accepted_handsome, Some(0), 1)),
                None,
            ),
            (
                "think time over: accepted, not handsome",
                guest("go", false, 1, Some(invited(1))),
                10,
                Some(status(State::Accepted, accepted_plain, Some(0), 1)),
                None,
            ),
            (
                "accepted and unchanged: settled",
                guest("go", true, 1, Some(status(State::Accepted, accepted_handsome, Some(0), 1))),
                100,
                None,
                None,
            ),
            (
                "accepted, then handsome edited to false: the message follows the spec",
                guest("go", false, 2, Some(status(State::Accepted, accepted_handsome, Some(0), 1))),
                100,
                Some(status(State::Accepted, accepted_plain, Some(0), 2)),
                None,
            ),
            (
                "accepted, then the language changed",
                guest("rust", true, 3, Some(status(State::Accepted, accepted_handsome, Some(0), 2))),
                100,
                Some(status(
                    State::Accepted,
                    "asta accepted and will speak rust on stage, handsome as ever",
                    Some(0),
                    3,
                )),
                None,
            ),
            (
                "invited, then the language changed: a new invitation text, same date",
                guest("rust", true, 2, Some(invited(1))),
                1,
                Some(status(State::Invited, "Invitation sent to asta, who speaks rust", Some(0), 2)),
                Some(Duration::from_secs(2)),
            ),
            (
                "invited without a date (edited by hand): invited again now",
                guest("go", true, 1, Some(status(State::Invited, "hand-made", None, 1))),
                5,
                Some(status(State::Invited, "Invitation sent to asta, who speaks go", Some(5), 1)),
                Some(THINK),
            ),
            (
                "a clock behind the invitation date: wait until the think time after the invitation",
                guest("go", true, 1, Some(invited(1))),
                -10,
                None,
                Some(Duration::from_secs(13)),
            ),
        ];
        for (case, ax, now, write, recheck) in cases {
            let p = plan(&ax, at(now), THINK);
            assert_eq!(p.write, write, "{case}");
            assert_eq!(p.recheck_after, recheck, "{case}");
        }
    }

    #[test]
    fn zero_think_time_accepts_on_the_next_look() {
        let first = plan(&guest("go", true, 1, None), at(0), Duration::ZERO);
        assert_eq!(first.recheck_after, Some(Duration::ZERO));
        let invited = guest("go", true, 1, first.write);
        let second = plan(&invited, at(0), Duration::ZERO);
        assert_eq!(second.write.and_then(|s| s.state), Some(State::Accepted));
    }

    #[test]
    fn the_plan_is_idempotent() {
        for (ax, now) in [(guest("go", true, 1, None), 0), (guest("go", false, 4, None), 7)] {
            let first = plan(&ax, at(now), THINK);
            let mut after = ax.clone();
            after.status = first.write.clone();
            let again = plan(&after, at(now), THINK);
            assert_eq!(again.write, None, "writing the planned status settles it");
        }
    }
}
