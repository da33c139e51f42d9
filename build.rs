//! Rebuild when a migration is added or changed: `sqlx::migrate!` embeds the files, and cargo
//! would not otherwise notice a new one.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
