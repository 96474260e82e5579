//! Any text as the `hsdb` setting of `hmd` and `hactl`, through `hsdb::Target::parse`.
//!
//! Never a panic. An accepted PostgreSQL target displays as a URL that is accepted again
//! (when it is not longer than the longest setting) and displays the same (the display
//! is canonical). A refusal's message is bounded and
//! never quotes a password the text held (one of 8 or more letters and digits, found once
//! in the text, and not words the message has anyway: the error shows `***` in its
//! place).

#![no_main]

use std::str::FromStr;

use hsdb::Target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Target::parse(text) {
        Ok(target) => {
            let shown = target.to_string();
            // Percent-encoding can make the display longer than the longest setting.
            if target.is_postgres() && shown.len() <= hsdb::target::MAX_TARGET_LEN {
                let again = Target::parse(&shown)
                    .unwrap_or_else(|e| panic!("displayed target refused: {e}\n{shown}"));
                assert_eq!(again.to_string(), shown, "display is not a fixed point");
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.len() <= 2 * hsdb::target::MAX_TARGET_LEN + 1_024,
                "message of {} bytes",
                message.len()
            );
            if let Ok(config) = postgres::Config::from_str(text)
                && let Some(password) = config.get_password()
                && let Ok(password) = std::str::from_utf8(password)
                && password.len() >= 8
                && password.bytes().all(|b| b.is_ascii_alphanumeric())
                && text.matches(password).count() == 1
            {
                // The same text with another password: if its message has the password
                // too, that is the message's own wording, not a quote of the input.
                let other = text.replacen(password, &"Z".repeat(password.len()), 1);
                let wording = Target::parse(&other)
                    .err()
                    .is_some_and(|e| e.to_string().contains(password));
                assert!(
                    wording || !message.contains(password),
                    "the error quotes the password: {message}"
                );
            }
        }
    }
});
