//! `imagePullPolicy` semantics as one pure decision.

use crate::reference::Reference;

/// A container's `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull every time the container is started (resolving the tag again).
    Always,
    /// Pull only when the image is not in the store.
    IfNotPresent,
    /// Never pull; a missing image is an error (`ErrImageNeverPull`).
    Never,
}

/// What the agent should do before starting a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullDecision {
    /// Pull the image (then use it).
    Pull,
    /// Use the image already in the store.
    UsePresent,
    /// Do not start: the image is missing and the policy forbids pulling (`ErrImageNeverPull`).
    NeverPullMissing,
}

impl PullPolicy {
    /// The Kubernetes default when a container gives no policy: `Always` for `:latest` or
    /// untagged references without a digest, `IfNotPresent` otherwise.
    pub fn default_for(image: &Reference) -> Self {
        if image.digest().is_none() && image.tag().is_none_or(|t| t == "latest") {
            PullPolicy::Always
        } else {
            PullPolicy::IfNotPresent
        }
    }

    /// Parses the Kubernetes spelling (`Always`, `IfNotPresent`, `Never`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Always" => Some(PullPolicy::Always),
            "IfNotPresent" => Some(PullPolicy::IfNotPresent),
            "Never" => Some(PullPolicy::Never),
            _ => None,
        }
    }
}

/// Decides whether to pull, given the policy and whether the image is in the store.
pub fn pull_policy(policy: PullPolicy, present: bool) -> PullDecision {
    match (policy, present) {
        (PullPolicy::Always, _) => PullDecision::Pull,
        (PullPolicy::IfNotPresent, true) | (PullPolicy::Never, true) => PullDecision::UsePresent,
        (PullPolicy::IfNotPresent, false) => PullDecision::Pull,
        (PullPolicy::Never, false) => PullDecision::NeverPullMissing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_decisions_follow_kubelet_semantics() {
        use PullDecision::*;
        use PullPolicy::*;
        let table = [
            (Always, true, Pull),
            (Always, false, Pull),
            (IfNotPresent, true, UsePresent),
            (IfNotPresent, false, Pull),
            (Never, true, UsePresent),
            (Never, false, NeverPullMissing),
        ];
        for (policy, present, want) in table {
            assert_eq!(
                pull_policy(policy, present),
                want,
                "{policy:?} present={present}"
            );
        }
    }

    #[test]
    fn default_policy_is_always_only_for_latest_or_untagged() {
        let d = |s: &str| PullPolicy::default_for(&Reference::parse(s).unwrap());
        assert_eq!(d("busybox"), PullPolicy::Always);
        assert_eq!(d("busybox:latest"), PullPolicy::Always);
        assert_eq!(d("busybox:1.36"), PullPolicy::IfNotPresent);
        let digest = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(d(&digest), PullPolicy::IfNotPresent);
        assert_eq!(PullPolicy::parse("Never"), Some(PullPolicy::Never));
        assert_eq!(PullPolicy::parse("never"), None);
    }
}
