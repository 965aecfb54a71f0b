//! Property tests for the parsers that see untrusted input: image references and layer entry
//! paths. They must never panic, and what they accept must be safe and stable.
#![allow(clippy::unwrap_used)]

use podvisor_rootfs::Reference;
use podvisor_rootfs::unpack::unpack_layer;
use proptest::prelude::*;

proptest! {
    #[test]
    fn reference_parsing_never_panics_and_normal_forms_are_fixed_points(s in "\\PC{0,80}") {
        if let Ok(r) = Reference::parse(&s) {
            let again = Reference::parse(&r.to_string()).unwrap();
            prop_assert_eq!(again.to_string(), r.to_string());
            prop_assert!(!r.registry().is_empty());
            prop_assert!(r.tag().is_some() || r.digest().is_some());
        }
    }

    #[test]
    fn structured_references_round_trip(
        host in prop::option::of("[a-z]{1,8}\\.[a-z]{2,3}(:[0-9]{1,5})?"),
        path in "[a-z0-9]{1,6}(/[a-z0-9]{1,6}){0,2}",
        tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}"),
    ) {
        let mut s = String::new();
        if let Some(h) = &host { s += h; s += "/"; }
        s += &path;
        if let Some(t) = &tag { s += ":"; s += t; }
        let r = Reference::parse(&s).unwrap();
        prop_assert_eq!(r.tag(), Some(tag.as_deref().unwrap_or("latest")));
        if let Some(h) = &host { prop_assert_eq!(r.registry(), h.as_str()); }
    }

    /// Arbitrary entry names in a real tar stream never write outside the target, and never
    /// panic the unpacker.
    #[test]
    fn arbitrary_entry_names_stay_inside(names in prop::collection::vec("[a-z./]{1,12}|\\.\\./[a-z]{1,4}|/[a-z]{1,4}", 1..6)) {
        let base = tempfile::tempdir().unwrap();
        let target = base.path().join("t");
        std::fs::create_dir(&target).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for n in &names {
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            let bytes = n.as_bytes();
            h.as_gnu_mut().unwrap().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let _ = unpack_layer(&tar[..], &target, None);
        let entries: Vec<_> = std::fs::read_dir(base.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(entries, vec![std::ffi::OsString::from("t")]);
    }
}
