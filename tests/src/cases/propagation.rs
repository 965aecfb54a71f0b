//! Mount propagation checks: a bind mount's `rshared` option and `linux.rootfsPropagation`
//! show up as peer groups (`shared:N`) in the container's mountinfo (proc(5)). (Debian's runc
//! 1.1.5 does not make `/` shared with rootfsPropagation `shared`: runc issue #1755, fixed by
//! runc PR #4724 in 2025; crun does.)

use super::{Case, Checks, Ctx, Seen};
use crate::report::Report;
use serde_json::json;

/// The propagation cases.
pub const CASES: &[Case] = &[
    Case {
        name: "bind_mount_propagation_option_applied",
        run: bind_propagation,
    },
    Case {
        name: "rootfs_propagation_applied",
        run: rootfs_propagation,
    },
];

fn propagation_of(r: &Report, point: &str) -> Option<Vec<String>> {
    let m = r.mounts.iter().rev().find(|m| m.mount_point == point)?;
    Some(
        m.propagation
            .iter()
            .map(|p| p.split(':').next().unwrap_or("").to_string())
            .collect(),
    )
}

fn shared_dir(ctx: &Ctx, name: &str) -> Result<std::path::PathBuf, String> {
    let d = ctx.work.join(name);
    std::fs::create_dir_all(&d).map_err(|e| format!("create {}: {e}", d.display()))?;
    Ok(d)
}

fn bind_propagation(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "prop-bind";
    let id = ctx.id(case);
    let shared = shared_dir(ctx, "prop-shared")?;
    let plain = shared_dir(ctx, "prop-plain")?;
    let mut b = ctx.probe_bundle(case, &[]);
    // Explicit, so a runtime's default recursive rootfs propagation cannot blur the check.
    b.set("/linux/rootfsPropagation", json!("private"));
    b.push("/mounts", json!({"destination": "/out", "type": "bind", "source": shared, "options": ["rbind", "rshared"]}));
    b.push(
        "/mounts",
        json!({"destination": "/data", "type": "bind", "source": plain, "options": ["rbind"]}),
    );
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq(
        "propagation of the rshared bind at /out",
        propagation_of(&r, "/out"),
        Some(vec!["shared".to_string()]),
    );
    c.eq(
        "propagation of the plain bind at /data (private)",
        propagation_of(&r, "/data"),
        Some(vec![]),
    );
    c.finish()
}

fn rootfs_propagation(ctx: &Ctx, seen: &mut Seen) -> Result<(), String> {
    let case = "prop-rootfs";
    let id = ctx.id(case);
    let mut b = ctx.probe_bundle(case, &[]);
    b.set("/linux/rootfsPropagation", json!("shared"));
    let r = ctx.run_probe(&b, &id, seen)?;
    let mut c = Checks::default();
    c.eq(
        "propagation of / with rootfsPropagation shared",
        propagation_of(&r, "/"),
        Some(vec!["shared".to_string()]),
    );
    c.finish()
}
