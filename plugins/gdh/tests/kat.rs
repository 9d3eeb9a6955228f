//! Known-answer vectors (see `gka_tests::kat` for the format and how to regenerate them).

#[test]
fn known_answer_vectors_replay() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test_vectors/kat.json");
    gka_tests::kat::check(&|| Box::new(gka_gdh::Gdh), &path);
}
