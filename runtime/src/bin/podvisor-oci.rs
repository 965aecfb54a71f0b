//! `podvisor-oci`: the runc-compatible command line of the podvisor runtime.

fn main() {
    // Must come first: when this process is a container init it never returns.
    podvisor_runtime::run_if_container_init();
    std::process::exit(podvisor_runtime::cli::main(std::env::args_os()));
}
