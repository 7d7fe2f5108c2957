//! Build script: only the Python extension (feature `python`) needs anything here.
//!
//! 1. It checks, before the long C++ build of torch-sys, that the Python interpreter torch-sys
//!    will ask for libtorch has torch 2.13.0, and otherwise fails with a message that says how
//!    to point the build at one. torch-sys runs `python` when `VIRTUAL_ENV` is set and `python3`
//!    otherwise (it ignores `PYO3_PYTHON` and maturin's `-i`), so the same rule is used here.
//! 2. It gives the extension an RPATH to the libraries of the torch package installed beside it
//!    (`site-packages/linpath/_linpath*.so` -> `site-packages/torch/lib`), so that an installed
//!    wheel loads without `import torch` first.

use std::env;
use std::process::Command;

/// The PyTorch release whose libtorch tch 0.26 links (torch-sys refuses any other).
const TORCH_VERSION: &str = "2.13.0";

/// The rpath, relative to the extension's own directory, of torch's shared libraries.
const TORCH_LIB_RPATH: &str = "$ORIGIN/../torch/lib";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    if env::var_os("CARGO_FEATURE_PYTHON").is_none() {
        return;
    }
    if env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        if let Err(message) = check_python_torch() {
            // cargo shows a failing build script's stderr; exiting non-zero stops the build.
            eprintln!("error: {message}");
            std::process::exit(1);
        }
    }
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,{TORCH_LIB_RPATH}");
    }
}

/// Ok when the interpreter torch-sys will run imports torch 2.13.0; else how to fix it.
fn check_python_torch() -> Result<(), String> {
    let python = if env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
    let probe = "import sys, torch; print(torch.__version__.split('+')[0]); print(sys.executable)";
    let found = match Command::new(python).args(["-c", probe]).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().last().unwrap_or("no output").to_owned();
            return Err(advice(python, &format!("`{python}` could not import torch ({last})")));
        }
        Err(e) => return Err(advice(python, &format!("`{python}` could not be run ({e})"))),
    };
    let mut lines = found.lines();
    let version = lines.next().unwrap_or_default().trim();
    let executable = lines.next().unwrap_or(python).trim();
    if version == TORCH_VERSION {
        return Ok(());
    }
    Err(advice(python, &format!("`{python}` ({executable}) has torch {version}")))
}

/// The error message: what was found and the ways to point the build at torch 2.13.0.
fn advice(python: &str, found: &str) -> String {
    format!(
        "linpath's extension links the libtorch of torch=={TORCH_VERSION}, found by running `{python}` \
         (torch-sys runs `python` when VIRTUAL_ENV is set, else `python3`; it ignores maturin's -i), \
         but {found}.\n\
         Fix: run `make wheel` (it builds in the project's .venv), or build inside a venv that has \
         torch=={TORCH_VERSION}: `source .venv/bin/activate && maturin build --release`, or \
         `VIRTUAL_ENV=$PWD/.venv PATH=$PWD/.venv/bin:$PATH maturin build --release`; \
         `pip install torch=={TORCH_VERSION}` into that venv first if it lacks it."
    )
}
