//! The man page and the README's flag table are generated from the clap
//! definition; these tests fail when the checked-in copies are out of date.
//! Regenerate with `IMSCAN_BLESS=1 cargo test --test cli_docs`.

use std::path::Path;

fn check(path: &str, generated: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os("IMSCAN_BLESS").is_some() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let on_disk = std::fs::read(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is out of date with the flags in src/cli.rs; regenerate with IMSCAN_BLESS=1 cargo test --test cli_docs",
        path.display()
    );
}

#[test]
fn man_page_is_current() {
    check("man/imscan.1", &imscan::cli::man_page());
}

#[test]
fn completions_mention_every_long_flag() {
    let mut out = Vec::new();
    imscan::cli::completions(clap_complete::Shell::Bash, &mut out);
    let script = String::from_utf8(out).unwrap();
    for arg in imscan::cli::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            assert!(
                script.contains(&format!("--{long}")),
                "bash completion lacks --{long}"
            );
        }
    }
}

#[test]
fn readme_flag_table_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- flags:begin -->\n", "<!-- flags:end -->");
    let start = readme
        .find(begin)
        .expect("README has the flags:begin marker")
        + begin.len();
    let stop = readme.find(end).expect("README has the flags:end marker");
    let table = imscan::cli::flag_table_markdown();
    if std::env::var_os("IMSCAN_BLESS").is_some() {
        let updated = format!("{}{}{}", &readme[..start], table, &readme[stop..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        readme[start..stop] == table,
        "README.md's flag table is out of date; regenerate with IMSCAN_BLESS=1 cargo test --test cli_docs"
    );
}
