fn main() -> std::process::ExitCode {
    quiet_mesa();
    let cli = sweep_gpu::cli::parse();
    match sweep_gpu::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut said = e.to_string();
            eprintln!("error: {said}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                // causes that the message already quotes are not repeated
                let text = s.to_string();
                if !said.contains(&text) {
                    eprintln!("  caused by: {text}");
                    said.push_str(&text);
                }
                source = s.source();
            }
            // a bad flag exits 2, as clap's own usage errors do; anything else 1
            if matches!(e, sweep_gpu::Error::Config { .. }) { std::process::ExitCode::from(2) } else { std::process::ExitCode::FAILURE }
        }
    }
}

/// Mesa prints "XDG_RUNTIME_DIR is invalid or not set" on every adapter query
/// when the variable is missing (servers, CI); give it a private folder.
fn quiet_mesa() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
    let dir = std::env::temp_dir().join(format!("sweep-gpu-runtime-{user}"));
    if std::fs::create_dir_all(&dir).is_ok() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        // SAFETY: called first thing in main, before any thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}
