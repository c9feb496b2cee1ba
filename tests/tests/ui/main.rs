//! The web UI in a real browser: headless Chromium (Debian's `chromium`) driven over the
//! DevTools protocol (`e2e::cdp`) against the real panel binary. `components` checks the
//! login page, the shell and the shared modules on a panel alone; `live` runs every page
//! against a real panel and agent on real Docker, logged in as real users. Every test
//! asserts that the page reported no console error, exception or CSP violation beyond the
//! ones it expects; screenshots land in `target/ui-screenshots/`.

mod bench;
mod components;
mod live;
