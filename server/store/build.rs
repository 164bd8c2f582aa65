//! Rebuilds the crate when a migration is added or removed: `sqlx::migrate!` embeds the files it
//! found when it last ran, and cargo only tracks the files it embedded.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
