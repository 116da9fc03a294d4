//! Tests of the poolset(5) grammar and of the size math, against the behaviour of PMDK 1.12
//! (`src/common/set.c`, `src/core/util.c`) and of its `pmempool` 1.12.1.

use std::fs;
use std::path::{Path, PathBuf};

use ckpt_poolset::grammar::{
    Directory, Extent, GrammarError, Limits, MAX_PART_SIZE, POOL_HDR_SIZE, Part, PartOrigin,
    PoolSet, Replica, SetOptions, SizeProblem, parse, parse_bytes, parse_size,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// Parses `text`, expecting an error at `(line, column)` whose message holds every word.
fn parse_err(text: &str, position: (usize, usize), words: &[&str]) -> GrammarError {
    let err = match parse(text) {
        Ok(set) => panic!("parsed {text:?} as {set:?}, expected an error at {position:?}"),
        Err(err) => err,
    };
    assert_message(&err, Some(position), words);
    err
}

fn assert_message(err: &GrammarError, position: Option<(usize, usize)>, words: &[&str]) {
    assert_eq!(err.position(), position, "position of {err:?}");
    let message = err.to_string();
    if let Some((line, column)) = position {
        let prefix = format!("line {line}, column {column}: ");
        assert!(message.starts_with(&prefix), "{message:?} does not start with {prefix:?}");
    }
    for word in words {
        assert!(message.contains(word), "{message:?} does not contain {word:?}");
    }
}

fn ok(text: &str) -> PoolSet {
    match parse(text) {
        Ok(set) => set,
        Err(err) => panic!("{text:?}: {err}"),
    }
}

/// (size, path) of every part of every replica.
fn layout(set: &PoolSet) -> Vec<Vec<(u64, PathBuf)>> {
    set.replicas
        .iter()
        .map(|r| r.parts.iter().map(|p| (p.size, p.path.clone())).collect())
        .collect()
}

fn line_part(path: &str, size: u64) -> Part {
    Part { path: path.into(), size, line: 0, column: 0, origin: PartOrigin::Line }
}

// ---------------------------------------------------------------------------------------------
// Structure, line endings, comments, blanks
// ---------------------------------------------------------------------------------------------

#[test]
fn minimal_set() {
    let set = ok("PMEMPOOLSET\n8M /mnt/pool\n");
    assert_eq!(set.options, SetOptions::default());
    assert_eq!(set.replicas.len(), 1);
    let replica = &set.replicas[0];
    assert_eq!(replica.line, 1);
    assert!(replica.directories.is_empty());
    assert_eq!(replica.parts.len(), 1);
    let part = &replica.parts[0];
    assert_eq!(part.path, Path::new("/mnt/pool"));
    assert_eq!(part.size, 8 * MIB);
    assert_eq!((part.line, part.column), (2, 1));
    assert_eq!(part.origin, PartOrigin::Line);
    assert!(!set.is_directory_based());
}

#[test]
fn last_line_without_newline() {
    assert_eq!(layout(&ok("PMEMPOOLSET\n8M /a")), vec![vec![(8 * MIB, PathBuf::from("/a"))]]);
}

#[test]
fn crlf_line_endings_everywhere() {
    let lf = "PMEMPOOLSET\nOPTION SINGLEHDR\n# comment\n\n8M /a # c\nREPLICA\n16M /b\n";
    let crlf = lf.replace('\n', "\r\n");
    let a = ok(lf);
    let b = ok(&crlf);
    assert_eq!(a, b);
    assert!(b.options.single_header);
    assert_eq!(b.replicas[1].line, 6);
    assert_eq!(b.replicas[1].parts[0].line, 7);
    // Mixed endings too.
    assert_eq!(ok("PMEMPOOLSET\r\n8M /a\nOPTION SINGLEHDR\r\nREPLICA\r\n16M /b"), a);
}

#[test]
fn lone_carriage_return_is_an_error() {
    let err = parse_err("PMEMPOOLSET\n8M /a\rb\n", (2, 6), &["control character", "'\\r'"]);
    assert!(matches!(err, GrammarError::InvalidCharacter { line: 2, column: 6, found: '\r' }));
    // A CR that ends the last line without an LF is not a line end.
    let err = parse_err("PMEMPOOLSET\n8M /a\r", (2, 6), &["control character"]);
    assert!(matches!(err, GrammarError::InvalidCharacter { found: '\r', .. }));
    // Old Mac line ends: one long line with CRs in it.
    let err = parse_err("PMEMPOOLSET\n8M /a\r8M /b\r", (2, 6), &["CRLF"]);
    assert!(matches!(err, GrammarError::InvalidCharacter { .. }));
}

#[test]
fn other_control_characters_are_errors() {
    let err = parse_err("PMEMPOOLSET\n8M /a\0b\n", (2, 6), &["control character"]);
    assert!(matches!(err, GrammarError::InvalidCharacter { found: '\0', .. }));
    let err = parse_err("PMEMPOOLSET\n8M\x0b/a\n", (2, 3), &["control character"]);
    assert!(matches!(err, GrammarError::InvalidCharacter { found: '\x0b', .. }));
    // ... but not inside comments.
    ok("PMEMPOOLSET\n8M /a # \0 \r \x07\n");
}

#[test]
fn comments_anywhere() {
    let set = ok("PMEMPOOLSET\n\
                  # at the start of a line\n\
                  8M /a # after the tokens\n\
                  8M /b#right after the path\n\
                  8M /c/d#e/f\n\
                  OPTION SINGLEHDR # after an option\n\
                  ###\n\
                  REPLICA#right after REPLICA\n\
                  24M /g\n\
                  # a comment at the end, without newline");
    assert_eq!(
        layout(&set),
        vec![
            vec![(8 * MIB, "/a".into()), (8 * MIB, "/b".into()), (8 * MIB, "/c/d".into())],
            vec![(24 * MIB, "/g".into())],
        ]
    );
    assert!(set.options.single_header);
    assert_eq!(set.replicas[1].line, 8);
}

#[test]
fn comments_may_hold_any_bytes() {
    let set = parse_bytes(b"PMEMPOOLSET\n# caf\xe9 \xff\xfe\n8M /a # \xc3\x28\n").unwrap();
    assert_eq!(layout(&set), vec![vec![(8 * MIB, "/a".into())]]);
}

#[test]
fn non_utf8_outside_comments_is_an_error() {
    let err = parse_bytes(b"PMEMPOOLSET\n8M /a\n16M /caf\xe9/x\n").unwrap_err();
    assert!(matches!(err, GrammarError::InvalidUtf8 { line: 3, column: 9 }));
    assert_message(&err, Some((3, 9)), &["UTF-8"]);
    // Columns count characters, not bytes.
    let mut text = "PMEMPOOLSET\n8M /é\u{2603}".as_bytes().to_vec();
    text.push(0xff);
    let err = parse_bytes(&text).unwrap_err();
    assert!(matches!(err, GrammarError::InvalidUtf8 { line: 2, column: 7 }), "{err:?}");
}

#[test]
fn blank_lines_are_skipped() {
    let set = ok("PMEMPOOLSET\n\n\r\n8M /a\n\n\nREPLICA\n\n8M /b\n\n");
    assert_eq!(set.replicas.len(), 2);
    assert_eq!(set.replicas[0].parts[0].line, 4);
    assert_eq!(set.replicas[1].parts[0].line, 9);
}

#[test]
fn whitespace_only_lines_are_errors() {
    for (text, line) in [
        ("PMEMPOOLSET\n \n8M /a\n", 2),
        ("PMEMPOOLSET\n8M /a\n\t\n", 3),
        ("PMEMPOOLSET\n8M /a\n \t \r\n", 3),
        // Blanks before a comment: PMDK does not skip the line either.
        ("PMEMPOOLSET\n8M /a\n   # indented comment\n", 3),
    ] {
        let err = parse_err(text, (line, 1), &["only blanks", "SIZE PATH"]);
        assert!(matches!(err, GrammarError::BlankLine { .. }), "{text:?}: {err:?}");
    }
}

#[test]
fn blanks_around_tokens() {
    let set = ok("PMEMPOOLSET\n  \t8M \t /a \t \nOPTION \t SINGLEHDR\t\n");
    let part = &set.replicas[0].parts[0];
    assert_eq!((part.size, part.path.as_path(), part.column), (8 * MIB, Path::new("/a"), 4));
    assert!(set.options.single_header);
}

// ---------------------------------------------------------------------------------------------
// The header line
// ---------------------------------------------------------------------------------------------

#[test]
fn header_must_be_exact() {
    for (text, column, found) in [
        ("", 1, "end of file"),
        ("pmempoolset\n8M /a\n", 1, "pmempoolset"),
        ("PMEMPOOLSET \n8M /a\n", 12, "PMEMPOOLSET "),
        ("PMEMPOOLSET\t\n8M /a\n", 12, "PMEMPOOLSET\t"),
        ("PMEMPOOLSET # comment\n8M /a\n", 12, "PMEMPOOLSET # comment"),
        ("PMEMPOOLSET#\n8M /a\n", 12, "PMEMPOOLSET#"),
        ("PMEMPOOLSETS\n8M /a\n", 12, "PMEMPOOLSETS"),
        ("PMEMPOOL\n8M /a\n", 9, "PMEMPOOL"),
        (" PMEMPOOLSET\n8M /a\n", 1, " PMEMPOOLSET"),
        ("\nPMEMPOOLSET\n8M /a\n", 1, ""),
        ("# comment\nPMEMPOOLSET\n8M /a\n", 1, "# comment"),
        ("\u{feff}PMEMPOOLSET\n8M /a\n", 1, "\u{feff}PMEMPOOLSET"),
        ("8M /a\n", 1, "8M /a"),
        ("PMEMPOOLSET\r\r\n8M /a\n", 12, "PMEMPOOLSET\r"),
    ] {
        let err = parse_err(text, (1, column), &["PMEMPOOLSET", "first line"]);
        match &err {
            GrammarError::Header { found: f, .. } => assert_eq!(f, found, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn header_alone_has_no_parts() {
    for text in ["PMEMPOOLSET", "PMEMPOOLSET\n", "PMEMPOOLSET\r\n# nothing\n\n"] {
        let err = parse_err(text, (1, 1), &["replica 0 has no parts", "end of the file"]);
        assert!(matches!(err, GrammarError::EmptyReplica { replica: 0, .. }), "{text:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

#[test]
fn every_size_suffix() {
    let cases: [(&str, u64); 22] = [
        ("4096", 4096),
        ("4096B", 4096),
        ("3K", 3 * KIB),
        ("3M", 3 * MIB),
        ("3G", 3 << 30),
        ("3T", 3 << 40),
        ("3P", 3 << 50),
        ("3KiB", 3 * KIB),
        ("3MiB", 3 * MIB),
        ("3GiB", 3 << 30),
        ("3TiB", 3 << 40),
        ("3PiB", 3 << 50),
        ("3kB", 3_000),
        ("3MB", 3_000_000),
        ("3GB", 3_000_000_000),
        ("3TB", 3_000_000_000_000),
        ("3PB", 3_000_000_000_000_000),
        ("0010M", 10 * MIB),
        ("+8M", 8 * MIB),
        ("8191P", 8191 << 50),
        ("9223372036854775807", MAX_PART_SIZE),
        ("18446744073709551615", u64::MAX),
    ];
    for (token, value) in cases {
        assert_eq!(parse_size(token), Ok(value), "{token}");
        if value <= MAX_PART_SIZE {
            let set = ok(&format!("PMEMPOOLSET\n{token} /a\n"));
            assert_eq!(set.replicas[0].parts[0].size, value, "{token}");
        }
    }
    assert_eq!(parse_size("0"), Ok(0));
}

#[test]
fn bad_size_suffixes() {
    for (token, suffix) in [
        ("1k", "k"),
        ("1mb", "mb"),
        ("1Kb", "Kb"),
        ("1KB", "KB"),
        ("1kiB", "kiB"),
        ("1Ki", "Ki"),
        ("1b", "b"),
        ("1E", "E"),
        ("1EiB", "EiB"),
        ("1EB", "EB"),
        ("1.5G", ".5G"),
        ("1,5G", ",5G"),
        ("1G1", "G1"),
        ("1MM", "MM"),
        ("0x10", "x10"),
        ("10M+", "M+"),
        ("1e6", "e6"),
        ("1Gé", "Gé"),
    ] {
        assert_eq!(parse_size(token), Err(SizeProblem::UnknownSuffix(suffix.into())), "{token}");
        let err = parse_err(
            &format!("PMEMPOOLSET\n8M /a\n{token} /b\n"),
            (3, 1),
            &["invalid size", token, "unknown suffix", "case-sensitive"],
        );
        match err {
            GrammarError::InvalidSize { found, problem, .. } => {
                assert_eq!(found, token);
                assert_eq!(problem, SizeProblem::UnknownSuffix(suffix.into()));
            }
            other => panic!("{token}: {other:?}"),
        }
    }
}

#[test]
fn sizes_that_are_not_numbers() {
    for (token, problem, word) in [
        ("", SizeProblem::Empty, "nothing"),
        ("M", SizeProblem::NotANumber, "decimal digit"),
        ("abc", SizeProblem::NotANumber, "decimal digit"),
        ("+", SizeProblem::NotANumber, "decimal digit"),
        ("++1", SizeProblem::NotANumber, "decimal digit"),
        ("-", SizeProblem::NotANumber, "decimal digit"),
        ("-x", SizeProblem::NotANumber, "decimal digit"),
        (".5G", SizeProblem::NotANumber, "decimal digit"),
        ("AUTO", SizeProblem::Auto, "Device DAX"),
        ("auto", SizeProblem::NotANumber, "decimal digit"),
    ] {
        assert_eq!(parse_size(token), Err(problem.clone()), "{token:?}");
        if !token.is_empty() {
            let err = parse_err(&format!("PMEMPOOLSET\n{token} /a\n"), (2, 1), &[word]);
            assert!(
                matches!(&err, GrammarError::InvalidSize { problem: p, .. } if *p == problem),
                "{token}: {err:?}"
            );
        }
    }
    assert!(SizeProblem::Empty.to_string().contains("expected a size"));
}

#[test]
fn negative_sizes() {
    // PMDK's sscanf("%zu") reads "-1" as 18446744073709551615.
    for token in ["-1", "-1M", "-0", "-18446744073709551616"] {
        assert_eq!(parse_size(token), Err(SizeProblem::Negative), "{token}");
        let err = parse_err(
            &format!("PMEMPOOLSET\n 8M /a\n  {token} /b\n"),
            (3, 3),
            &["invalid size", "negative"],
        );
        assert!(matches!(err, GrammarError::InvalidSize { problem: SizeProblem::Negative, .. }));
    }
}

#[test]
fn overflowing_sizes() {
    // PMDK wraps these silently (20000000P becomes 12970366926827028480).
    for token in [
        "18446744073709551616",
        "99999999999999999999999999",
        "20000000P",
        "16384P",
        "18446744073709551615K",
        "18446744073709552kB",
    ] {
        assert_eq!(parse_size(token), Err(SizeProblem::Overflow), "{token}");
        let err = parse_err(&format!("PMEMPOOLSET\n{token} /a\n"), (2, 1), &["overflows 64 bits"]);
        assert!(matches!(err, GrammarError::InvalidSize { problem: SizeProblem::Overflow, .. }));
    }
}

#[test]
fn sizes_larger_than_any_file() {
    for token in ["9223372036854775808", "8192P", "18446744073709551615"] {
        let err = parse_err(
            &format!("PMEMPOOLSET\n{token} /a\n"),
            (2, 1),
            &["largest file size", "9223372036854775807"],
        );
        assert!(matches!(err, GrammarError::InvalidSize { problem: SizeProblem::TooLarge, .. }));
    }
}

#[test]
fn zero_size_part() {
    for token in ["0", "0M", "000", "0B"] {
        let err = parse_err(&format!("PMEMPOOLSET\n{token} /a\n"), (2, 1), &["size 0"]);
        assert!(matches!(err, GrammarError::InvalidSize { problem: SizeProblem::Zero, .. }));
    }
}

#[test]
fn replica_too_large_in_total() {
    let text = format!("PMEMPOOLSET\n{MAX_PART_SIZE} /a\nREPLICA\n{MAX_PART_SIZE} /b\n1 /c\n");
    let err = parse_err(&text, (5, 1), &["replica 1 is too large"]);
    assert!(matches!(err, GrammarError::ReplicaTooLarge { replica: 1, .. }));
    // Exactly the limit is fine.
    ok(&format!("PMEMPOOLSET\n{} /a\n1 /b\n", MAX_PART_SIZE - 1));
}

// ---------------------------------------------------------------------------------------------
// Paths and tokens
// ---------------------------------------------------------------------------------------------

#[test]
fn relative_paths() {
    for path in ["pool", "./pool", "../pool", "~/pool", "C:\\pool"] {
        let err = parse_err(
            &format!("PMEMPOOLSET\n8M\t{path}\n"),
            (2, 4),
            &["absolute path", &format!("{path:?}")],
        );
        assert!(matches!(&err, GrammarError::RelativePath { found, .. } if found == path));
    }
}

#[test]
fn missing_path_or_size() {
    let err = parse_err("PMEMPOOLSET\n8M\n", (2, 3), &["SIZE PATH", "\"8M\"", "path is missing"]);
    assert!(matches!(&err, GrammarError::MissingPath { size, .. } if size == "8M"));
    let err = parse_err("PMEMPOOLSET\n8M /a\n  8M  # no path\n", (3, 7), &["path is missing"]);
    assert!(matches!(err, GrammarError::MissingPath { .. }));
    // A path without its size: the one token is taken for the size, as by PMDK.
    let err = parse_err("PMEMPOOLSET\n/mnt/pool\n", (2, 10), &["\"/mnt/pool\"", "SIZE PATH"]);
    assert!(matches!(err, GrammarError::MissingPath { .. }));
}

#[test]
fn extra_tokens() {
    let err = parse_err("PMEMPOOLSET\n8M /a /b\n", (2, 7), &["extra token", "\"/b\""]);
    assert!(matches!(&err, GrammarError::ExtraToken { found, .. } if found == "/b"));
    let err = parse_err("PMEMPOOLSET\n8M /a\t\tx y\n", (2, 8), &["extra token", "\"x\""]);
    assert!(matches!(err, GrammarError::ExtraToken { .. }));
    // A path with a blank in it cannot be written in a poolset file.
    parse_err("PMEMPOOLSET\n8M /my pool\n", (2, 8), &["\"pool\""]);
}

#[test]
fn duplicate_paths() {
    let err = parse_err(
        "PMEMPOOLSET\n8M /a\n8M /b\n8M /a\n",
        (4, 4),
        &["duplicate part path /a", "line 2"],
    );
    assert!(matches!(err, GrammarError::DuplicatePath { line: 4, first_line: 2, .. }));
    // Across replicas, and spelled differently.
    for other in ["/x/y", "/x//y", "/x/./y", "/x/y/", "//x/y"] {
        let text = format!("PMEMPOOLSET\n8M /x/y\nREPLICA\n8M {other}\n");
        let err = parse_err(&text, (4, 4), &["duplicate part path", "line 2"]);
        assert!(matches!(err, GrammarError::DuplicatePath { first_line: 2, .. }), "{other}");
    }
    // Different files are fine, even with a shared prefix.
    ok("PMEMPOOLSET\n8M /x/y\n8M /x/y2\nREPLICA\n8M /x/y/z\n");
}

// ---------------------------------------------------------------------------------------------
// Replicas
// ---------------------------------------------------------------------------------------------

#[test]
fn replicas() {
    let set = ok("PMEMPOOLSET\n8M /a\n8M /b\nREPLICA\n16M /c\nREPLICA\n4M /d\n12M /e\n");
    assert_eq!(set.replicas.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 4, 6]);
    assert_eq!(set.replicas.iter().map(|r| r.parts.len()).collect::<Vec<_>>(), [2, 1, 2]);
}

#[test]
fn replica_keyword_must_be_alone() {
    for (text, column, found) in [
        ("PMEMPOOLSET\n8M /a\nREPLICAx\n8M /b\n", 8, "REPLICAx"),
        ("PMEMPOOLSET\n8M /a\nREPLICAS /x\n8M /b\n", 8, "REPLICAS"),
        // PMDK reads blanks after REPLICA as the start of a remote replica, so a comment
        // after blanks is refused ("REPLICA#comment" is fine).
        ("PMEMPOOLSET\n8M /a\nREPLICA # local mirror\n8M /b\n", 8, "REPLICA "),
        ("PMEMPOOLSET\n8M /a\nREPLICA \n8M /b\n", 8, "REPLICA "),
        ("PMEMPOOLSET\n8M /a\nREPLICA\t\r\n8M /b\n", 8, "REPLICA\t"),
    ] {
        let err = parse_err(text, (3, column), &["exactly `REPLICA`"]);
        match &err {
            GrammarError::ReplicaKeyword { found: f, .. } => assert_eq!(f, found, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
    // Not at the start of the line, or in lower case: not a REPLICA line at all.
    parse_err("PMEMPOOLSET\n8M /a\n REPLICA\n8M /b\n", (3, 9), &["\"REPLICA\"", "path is missing"]);
    parse_err("PMEMPOOLSET\n8M /a\nreplica\n8M /b\n", (3, 8), &["path is missing"]);
}

#[test]
fn remote_replicas_are_refused() {
    let err = parse_err(
        "PMEMPOOLSET\n8M /a\nREPLICA user@example.com remote-objpool.set\n",
        (3, 9),
        &["remote replicas are not supported", "user@example.com remote-objpool.set"],
    );
    match err {
        GrammarError::RemoteReplica { host, descriptor, .. } => {
            assert_eq!(host, "user@example.com");
            assert_eq!(descriptor.as_deref(), Some("remote-objpool.set"));
        }
        other => panic!("{other:?}"),
    }
    // Malformed remote forms are refused the same way.
    let err = parse_err("PMEMPOOLSET\n8M /a\nREPLICA\t host\n", (3, 10), &["remote replicas"]);
    assert!(matches!(err, GrammarError::RemoteReplica { descriptor: None, .. }));
    parse_err("PMEMPOOLSET\n8M /a\nREPLICA host /abs.set\n", (3, 9), &["remote replicas"]);
    parse_err("PMEMPOOLSET\n8M /a\nREPLICA h d extra\n", (3, 9), &["remote replicas"]);
}

#[test]
fn empty_replicas() {
    let err = parse_err(
        "PMEMPOOLSET\nREPLICA\n8M /a\n",
        (1, 1),
        &["replica 0 has no parts", "`REPLICA` on line 2"],
    );
    assert!(matches!(err, GrammarError::EmptyReplica { replica: 0, .. }));
    let err = parse_err(
        "PMEMPOOLSET\n8M /a\n# comment\nREPLICA\n# nothing\n",
        (4, 1),
        &["replica 1 has no parts", "end of the file"],
    );
    assert!(matches!(err, GrammarError::EmptyReplica { replica: 1, line: 4, .. }));
    let err = parse_err(
        "PMEMPOOLSET\n8M /a\nREPLICA\nREPLICA\n8M /b\n",
        (3, 1),
        &["replica 1 has no parts", "`REPLICA` on line 4"],
    );
    assert!(matches!(err, GrammarError::EmptyReplica { replica: 1, .. }));
    // Options do not count as parts.
    parse_err("PMEMPOOLSET\n8M /a\nREPLICA\nOPTION SINGLEHDR\n", (3, 1), &["no parts"]);
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

#[test]
fn options() {
    let set = ok("PMEMPOOLSET\nOPTION SINGLEHDR\n8M /a\n");
    assert_eq!(set.options, SetOptions { single_header: true, no_headers: false });
    let set = ok("PMEMPOOLSET\n8M /a\nOPTION NOHDRS\n");
    assert_eq!(set.options, SetOptions { single_header: false, no_headers: true });
    // Anywhere after the first line, several times, several per line.
    let set =
        ok("PMEMPOOLSET\n8M /a\nREPLICA\nOPTION SINGLEHDR SINGLEHDR\n8M /b\nOPTION SINGLEHDR\n");
    assert!(set.options.single_header);
    // PMDK matches the OPTION prefix only, so this is SINGLEHDR too.
    assert!(ok("PMEMPOOLSET\nOPTIONSINGLEHDR\n8M /a\n").options.single_header);
}

#[test]
fn missing_option() {
    for (text, column) in [
        ("PMEMPOOLSET\nOPTION\n8M /a\n", 7),
        ("PMEMPOOLSET\nOPTION  \t\n8M /a\n", 10),
        ("PMEMPOOLSET\nOPTION # SINGLEHDR\n8M /a\n", 8),
    ] {
        let err = parse_err(text, (2, column), &["expected an option", "SINGLEHDR or NOHDRS"]);
        assert!(matches!(err, GrammarError::MissingOption { .. }), "{text:?}");
    }
}

#[test]
fn unknown_options() {
    for (text, column, found) in [
        ("PMEMPOOLSET\nOPTION FOO\n8M /a\n", 8, "FOO"),
        ("PMEMPOOLSET\nOPTION singlehdr\n8M /a\n", 8, "singlehdr"),
        ("PMEMPOOLSET\nOPTION SINGLEHDR NOHDR\n8M /a\n", 18, "NOHDR"),
        ("PMEMPOOLSET\nOPTIONS SINGLEHDR\n8M /a\n", 7, "S"),
        ("PMEMPOOLSET\n8M /a\nOPTION\tSINGLEHDR,NOHDRS\n", 8, "SINGLEHDR,NOHDRS"),
    ] {
        let line = if text.starts_with("PMEMPOOLSET\n8M") { 3 } else { 2 };
        let err = parse_err(text, (line, column), &["unknown option", &format!("{found:?}")]);
        assert!(matches!(&err, GrammarError::UnknownOption { found: f, .. } if f == found));
    }
}

#[test]
fn conflicting_options() {
    let err = parse_err(
        "PMEMPOOLSET\nOPTION SINGLEHDR NOHDRS\n8M /a\n",
        (2, 18),
        &["NOHDRS conflicts with option SINGLEHDR on line 2", "mutually exclusive"],
    );
    assert!(matches!(err, GrammarError::ConflictingOptions { first_line: 2, .. }));
    let err = parse_err(
        "PMEMPOOLSET\nOPTION NOHDRS\n8M /a\nOPTION SINGLEHDR\n",
        (4, 8),
        &["SINGLEHDR conflicts with option NOHDRS on line 2"],
    );
    assert!(matches!(&err, GrammarError::ConflictingOptions { found, .. } if found == "SINGLEHDR"));
}

// ---------------------------------------------------------------------------------------------
// Size math
// ---------------------------------------------------------------------------------------------

/// The sizes PMDK 1.12.1 gave for this set: `pmempool create obj` then `pmempool info`
/// reported a heap offset of 0x302000 and a heap size of 9838592, i.e. a pool of 12992512
/// bytes (9838592 with `OPTION SINGLEHDR`: 12996608).
#[test]
fn size_math_matches_pmempool() {
    let text = "PMEMPOOLSET\n10000000 /p0\n3000000 /p1\nREPLICA\n9M /p2\n4M /p3\n";
    let set = ok(text);
    assert_eq!(set.pool_size(), 0x30_2000 + 9_838_592);
    let single = ok(&text.replace("PMEMPOOLSET\n", "PMEMPOOLSET\nOPTION SINGLEHDR\n"));
    assert_eq!(single.pool_size(), 0x30_2000 + 9_842_688);
}

#[test]
fn size_math_with_headers() {
    // 10000 rounds down to 8192, 20000 to 16384, 12289 to 12288, 5000 to 4096.
    let set = ok("PMEMPOOLSET\n10000 /a\n20000 /b\n12289 /c\n5000 /d\n");
    assert_eq!((0..5).map(|p| set.header_size(p)).collect::<Vec<_>>(), [4096; 5]);
    assert_eq!(set.part_header_size(0, 3), Some(POOL_HDR_SIZE));
    assert_eq!(set.part_header_size(0, 4), None);
    assert_eq!(set.part_header_size(1, 0), None);
    let usable: Vec<_> = (0..4).map(|p| set.part_usable_size(0, p).unwrap()).collect();
    assert_eq!(usable, [4096, 12288, 8192, 0]);
    assert_eq!(set.part_usable_size(0, 4), None);
    assert_eq!(set.replica_usable_size(0), Some(24576));
    // PMDK: sum of rounded sizes less (parts - 1) headers.
    assert_eq!(set.replica_size(0), Some(8192 + 16384 + 12288 + 4096 - 3 * 4096));
    assert_eq!(set.replica_size(1), None);
    assert_eq!(set.replica_usable_size(1), None);
    assert_eq!(set.pool_size(), 28672);
    assert_eq!(set.pool_usable_size(), 24576);
    assert_eq!(set.replica_reservation_size(0), Some(28672));
    assert_eq!(
        set.replica_extents(0).unwrap(),
        [
            Extent { part: 0, file_offset: 4096, pool_offset: 4096, len: 4096 },
            Extent { part: 1, file_offset: 4096, pool_offset: 8192, len: 12288 },
            Extent { part: 2, file_offset: 4096, pool_offset: 20480, len: 8192 },
            Extent { part: 3, file_offset: 4096, pool_offset: 28672, len: 0 },
        ]
    );
    assert_eq!(set.replica_extents(1), None);
}

#[test]
fn size_math_single_header() {
    let set = ok("PMEMPOOLSET\nOPTION SINGLEHDR\n10000 /a\n20000 /b\n12289 /c\n");
    assert_eq!((0..3).map(|p| set.header_size(p)).collect::<Vec<_>>(), [4096, 0, 0]);
    let usable: Vec<_> = (0..3).map(|p| set.part_usable_size(0, p).unwrap()).collect();
    assert_eq!(usable, [4096, 16384, 12288]);
    assert_eq!(set.replica_usable_size(0), Some(32768));
    // PMDK: the sum of the rounded sizes (one header, counted in the pool).
    assert_eq!(set.replica_size(0), Some(8192 + 16384 + 12288));
    assert_eq!(
        set.replica_extents(0).unwrap(),
        [
            Extent { part: 0, file_offset: 4096, pool_offset: 4096, len: 4096 },
            Extent { part: 1, file_offset: 0, pool_offset: 8192, len: 16384 },
            Extent { part: 2, file_offset: 0, pool_offset: 24576, len: 12288 },
        ]
    );
}

#[test]
fn size_math_no_headers() {
    let set = ok("PMEMPOOLSET\nOPTION NOHDRS\n10000 /a\n20000 /b\n");
    assert_eq!((0..2).map(|p| set.header_size(p)).collect::<Vec<_>>(), [0, 0]);
    assert_eq!(set.part_usable_size(0, 0), Some(8192));
    assert_eq!(set.part_usable_size(0, 1), Some(16384));
    assert_eq!(set.replica_usable_size(0), Some(24576));
    assert_eq!(set.replica_size(0), Some(24576));
    assert_eq!(set.pool_usable_size(), 24576);
    assert_eq!(
        set.replica_extents(0).unwrap(),
        [
            Extent { part: 0, file_offset: 0, pool_offset: 0, len: 8192 },
            Extent { part: 1, file_offset: 0, pool_offset: 8192, len: 16384 },
        ]
    );
}

#[test]
fn pool_size_is_the_smallest_replica() {
    let set =
        ok("PMEMPOOLSET\n64M /a\nREPLICA\n16M /b\n16M /c\nREPLICA\n40M /d\nREPLICA\n33M /e\n");
    let sizes: Vec<_> = (0..4).map(|r| set.replica_size(r).unwrap()).collect();
    assert_eq!(sizes, [64 * MIB, 32 * MIB - 4096, 40 * MIB, 33 * MIB]);
    assert_eq!(set.pool_size(), 32 * MIB - 4096);
    assert_eq!(set.pool_usable_size(), 32 * MIB - 2 * 4096);
    assert_eq!(PoolSet::new(SetOptions::default(), Vec::new()).pool_size(), 0);
}

#[test]
fn extents_tile_the_pool() {
    let text = "PMEMPOOLSET\n5M /a\n3000000 /b\n12345678 /c\nREPLICA\n20000000 /d\n";
    for options in ["", "OPTION SINGLEHDR\n", "OPTION NOHDRS\n"] {
        let set = ok(&text.replace("PMEMPOOLSET\n", &format!("PMEMPOOLSET\n{options}")));
        for r in 0..set.replicas.len() {
            let extents = set.replica_extents(r).unwrap();
            let mut end = set.header_size(0);
            for (p, extent) in extents.iter().enumerate() {
                assert_eq!(extent.part, p);
                assert_eq!(extent.pool_offset, end);
                assert_eq!(extent.file_offset, set.part_header_size(r, p).unwrap());
                assert_eq!(extent.len, set.part_usable_size(r, p).unwrap());
                assert_eq!(extent.file_offset % 4096, 0);
                assert_eq!(extent.len % 4096, 0);
                end += extent.len;
            }
            assert_eq!(end, set.replica_size(r).unwrap(), "{options}");
            assert_eq!(end - set.header_size(0), set.replica_usable_size(r).unwrap());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical text
// ---------------------------------------------------------------------------------------------

#[test]
fn to_text_is_canonical_and_round_trips() {
    let set = ok("PMEMPOOLSET\r\n\
                  # a comment\r\n\
                  \t16384K  /mnt/a/pool.0 # c\r\n\
                  1048577 /mnt/a/pool.1\r\n\
                  OPTION SINGLEHDR\r\n\
                  REPLICA\r\n\
                  2GiB /mnt/b/mirror\r\n\
                  3000kB /mnt/b/mirror.1\r\n\
                  REPLICA\r\n\
                  1P /mnt/c/big\r\n");
    let text = set.to_text().unwrap();
    assert_eq!(
        text,
        "PMEMPOOLSET\n\
         OPTION SINGLEHDR\n\
         16M /mnt/a/pool.0\n\
         1048577 /mnt/a/pool.1\n\
         REPLICA\n\
         2G /mnt/b/mirror\n\
         3000000 /mnt/b/mirror.1\n\
         REPLICA\n\
         1P /mnt/c/big\n"
    );
    let again = parse(&text).unwrap();
    assert_eq!(again, set);
    assert_eq!(again.to_text().unwrap(), text);
    // Equality is about meaning, not lines.
    assert_ne!(again.replicas[1].line, set.replicas[1].line);
    let both = ok("PMEMPOOLSET\nOPTION NOHDRS\n4K /a\n");
    assert_eq!(both.to_text().unwrap(), "PMEMPOOLSET\nOPTION NOHDRS\n4K /a\n");
}

#[test]
fn sets_built_in_code() {
    let replicas = vec![
        Replica { parts: vec![line_part("/a", 8 * MIB), line_part("/b", 3)], ..Replica::default() },
        Replica { parts: vec![line_part("/c", 5 << 40)], ..Replica::default() },
    ];
    let set = PoolSet::new(SetOptions { single_header: true, no_headers: false }, replicas);
    let text = set.to_text().unwrap();
    assert_eq!(text, "PMEMPOOLSET\nOPTION SINGLEHDR\n8M /a\n3 /b\nREPLICA\n5T /c\n");
    assert_eq!(parse(&text).unwrap(), set);
}

#[test]
fn unwritable_sets() {
    for (path, reason) in [
        ("/my pool", "blank"),
        ("/a\tb", "blank"),
        ("/a#b", "`#`"),
        ("relative", "not absolute"),
        ("/a\nb", "control character"),
        ("/a\rb", "control character"),
    ] {
        let set = PoolSet::new(
            SetOptions::default(),
            vec![Replica { parts: vec![line_part(path, 8 * MIB)], ..Replica::default() }],
        );
        let err = set.to_text().unwrap_err();
        assert!(matches!(err, GrammarError::Unwritable { replica: 0, part: 0, .. }), "{path:?}");
        assert_message(&err, None, &["cannot write part 0 of replica 0", reason]);
    }
    {
        use std::os::unix::ffi::OsStrExt;
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(b"/caf\xe9"));
        let part = Part { path, ..line_part("/", 8 * MIB) };
        let set = PoolSet::new(
            SetOptions::default(),
            vec![Replica { parts: vec![part], ..Replica::default() }],
        );
        assert_message(&set.to_text().unwrap_err(), None, &["not UTF-8"]);
    }
    // Rules of the grammar are checked on the written text.
    let empty = PoolSet::new(
        SetOptions::default(),
        vec![
            Replica { parts: vec![line_part("/a", 8 * MIB)], ..Replica::default() },
            Replica::default(),
        ],
    );
    let err = empty.to_text().unwrap_err();
    assert!(matches!(err, GrammarError::EmptyReplica { replica: 1, .. }), "{err:?}");
    let zero = PoolSet::new(
        SetOptions::default(),
        vec![Replica { parts: vec![line_part("/a", 0)], ..Replica::default() }],
    );
    assert!(matches!(zero.to_text(), Err(GrammarError::InvalidSize { .. })));
    let both = PoolSet::new(
        SetOptions { single_header: true, no_headers: true },
        vec![Replica { parts: vec![line_part("/a", 8 * MIB)], ..Replica::default() }],
    );
    assert!(matches!(both.to_text(), Err(GrammarError::ConflictingOptions { .. })));
    let twice = PoolSet::new(
        SetOptions::default(),
        vec![Replica {
            parts: vec![line_part("/a", 8 * MIB), line_part("/a", 8 * MIB)],
            ..Replica::default()
        }],
    );
    assert!(matches!(twice.to_text(), Err(GrammarError::DuplicatePath { .. })));
    let mixed = PoolSet::new(
        SetOptions::default(),
        vec![Replica {
            parts: vec![line_part("/a", 8 * MIB)],
            directories: vec![Directory {
                path: "/d".into(),
                reservation: MIB,
                line: 0,
                column: 0,
            }],
            line: 0,
        }],
    );
    assert_message(&mixed.to_text().unwrap_err(), None, &["both directories and part lines"]);
}

// ---------------------------------------------------------------------------------------------
// Limits (what pmempool create / pmemobj_open enforce)
// ---------------------------------------------------------------------------------------------

#[test]
fn limits_of_pmemobj() {
    assert_eq!(Limits::PMEMOBJ, Limits { min_part: 2 * MIB, min_pool: 8 * MIB });
    // Exactly the minimum pool size (8 MiB + 4 KiB of parts, less one header), and 4 KiB less.
    ok("PMEMPOOLSET\n4M /a\n4100K /b\n").validate(&Limits::PMEMOBJ).unwrap();
    let err = ok("PMEMPOOLSET\n4M /a\n4099K /b\n").validate(&Limits::PMEMOBJ).unwrap_err();
    assert!(matches!(err, GrammarError::PoolTooSmall { size, .. } if size == 8 * MIB - 4096));
    // pmempool: "size 1048576 smaller than 2097152".
    let err = ok("PMEMPOOLSET\n10M /a\nREPLICA\n10M /b\n   1M /c\n")
        .validate(&Limits::PMEMOBJ)
        .unwrap_err();
    assert!(matches!(err, GrammarError::PartTooSmall { replica: 1, part: 1, size: 1_048_576, .. }));
    assert_message(&err, Some((5, 4)), &["part 1 of replica 1 is too small", "1048576", "2097152"]);
    // pmempool: "reservation pool size 8384512 smaller than 8388608".
    let err = ok("PMEMPOOLSET\n4M /a\n4M /b\n").validate(&Limits::PMEMOBJ).unwrap_err();
    assert!(matches!(err, GrammarError::PoolTooSmall { replica: 0, size: 8_384_512, .. }));
    assert_message(&err, Some((1, 1)), &["replica 0 is too small", "8384512", "8388608"]);
    let err = ok("PMEMPOOLSET\n10M /a\nREPLICA\n4M /b\n").validate(&Limits::PMEMOBJ).unwrap_err();
    assert_message(&err, Some((3, 1)), &["replica 1 is too small"]);
    // pmempool: "the NOHDRS poolset option is not supported for local poolsets".
    let err = ok("PMEMPOOLSET\n10M /a\nOPTION  NOHDRS\n").validate(&Limits::PMEMOBJ).unwrap_err();
    assert!(matches!(err, GrammarError::NoHeadersUnsupported { .. }));
    assert_message(&err, Some((3, 9)), &["NOHDRS", "not supported"]);
    // Parsing alone accepts all of them.
    ok("PMEMPOOLSET\n4K /a\n").validate(&Limits { min_part: 4096, min_pool: 4096 }).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Directories (the filesystem step)
// ---------------------------------------------------------------------------------------------

fn write_file(path: &Path, size: usize) {
    fs::write(path, vec![0u8; size]).unwrap();
}

fn dir_set(lines: &[(&str, &Path)], single_header: bool) -> String {
    use std::fmt::Write as _;
    let mut text = String::from("PMEMPOOLSET\n");
    if single_header {
        text.push_str("OPTION SINGLEHDR\n");
    }
    for (size, path) in lines {
        if *size == "REPLICA" {
            text.push_str("REPLICA\n");
        } else {
            writeln!(text, "{size} {}", path.display()).unwrap();
        }
    }
    text
}

#[test]
fn file_parts_are_unchanged_by_resolution() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    write_file(&a, 4096);
    let text = dir_set(&[("8M", &a), ("8M", &tmp.path().join("missing"))], false);
    let set = ok(&text);
    let resolved = set.clone().resolve_directories().unwrap();
    assert_eq!(resolved, set);
    assert!(!resolved.is_directory_based());
    assert_eq!(resolved.replicas[0].parts[1].line, 3);
}

#[test]
fn directory_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    fs::create_dir(&d).unwrap();
    write_file(&d.join("000000.pmem"), 8 * 1024 * 1024);
    write_file(&d.join("000001.pmem"), 12289);
    write_file(&d.join("2.pmem"), 40960);
    // Not parts: other names, a bare ".pmem", a directory, a link.
    write_file(&d.join("notes.txt"), 10);
    write_file(&d.join(".pmem"), 10);
    write_file(&d.join("000003.pmem.bak"), 10);
    fs::create_dir(d.join("000004.pmem")).unwrap();
    std::os::unix::fs::symlink(d.join("000000.pmem"), d.join("000005.pmem")).unwrap();
    let text = dir_set(&[("1G", &d)], true);
    let set = ok(&text).resolve_directories().unwrap();
    assert!(set.is_directory_based());
    let replica = &set.replicas[0];
    assert_eq!(
        replica.directories,
        [Directory { path: d.clone(), reservation: 1 << 30, line: 3, column: 1 }]
    );
    assert_eq!(replica.directories[0].line, 3);
    let parts: Vec<_> = replica.parts.iter().map(|p| (p.path.clone(), p.size, p.origin)).collect();
    let origin = |index| PartOrigin::Directory { directory: 0, index, exists: true };
    assert_eq!(
        parts,
        [
            (d.join("000000.pmem"), 8 * MIB, origin(0)),
            (d.join("000001.pmem"), 12289, origin(1)),
            (d.join("2.pmem"), 40960, origin(2)),
        ]
    );
    assert!(replica.parts.iter().all(|p| p.line == 3));
    // Size math on the files (SINGLEHDR, as PMDK requires for directories).
    assert_eq!(set.replica_size(0), Some(8 * MIB + 12288 + 40960));
    assert_eq!(set.replica_usable_size(0), Some(8 * MIB + 12288 + 40960 - 4096));
    assert_eq!(set.replica_reservation_size(0), Some(1 << 30));
    set.validate(&Limits { min_part: 4096, min_pool: 8 * MIB }).unwrap();
    // Resolving again changes nothing; the text holds the directory lines.
    assert_eq!(set.clone().resolve_directories().unwrap(), set);
    let written = set.to_text().unwrap();
    assert_eq!(written, format!("PMEMPOOLSET\nOPTION SINGLEHDR\n1G {}\n", d.display()));
    assert_eq!(parse(&written).unwrap().resolve_directories().unwrap(), set);
    // And from a file.
    let file = tmp.path().join("pool.set");
    fs::write(&file, &text).unwrap();
    assert_eq!(PoolSet::from_file(&file).unwrap(), set);
}

#[test]
fn directory_parts_across_directories_and_replicas() {
    let tmp = tempfile::tempdir().unwrap();
    let [d1, d2, d3, d4] = ["d1", "d2", "d3", "d4"].map(|n| tmp.path().join(n));
    for d in [&d1, &d2, &d3, &d4] {
        fs::create_dir(d).unwrap();
    }
    // Replica 0 spreads its parts over two directories; replica 1 has lost part 1.
    write_file(&d1.join("000000.pmem"), 8 * 1024 * 1024);
    write_file(&d2.join("000001.pmem"), 4 * 1024 * 1024);
    write_file(&d1.join("000002.pmem"), 2 * 1024 * 1024);
    write_file(&d4.join("000000.pmem"), 8 * 1024 * 1024);
    write_file(&d4.join("000002.pmem"), 2 * 1024 * 1024);
    let text =
        dir_set(&[("1G", &d1), ("2G", &d2), ("REPLICA", &d1), ("1G", &d3), ("1G", &d4)], true);
    let set = ok(&text).resolve_directories().unwrap();
    let r0: Vec<_> =
        set.replicas[0].parts.iter().map(|p| (p.path.clone(), p.origin, p.line)).collect();
    assert_eq!(
        r0,
        [
            (
                d1.join("000000.pmem"),
                PartOrigin::Directory { directory: 0, index: 0, exists: true },
                3
            ),
            (
                d2.join("000001.pmem"),
                PartOrigin::Directory { directory: 1, index: 1, exists: true },
                4
            ),
            (
                d1.join("000002.pmem"),
                PartOrigin::Directory { directory: 0, index: 2, exists: true },
                3
            ),
        ]
    );
    let r1: Vec<_> =
        set.replicas[1].parts.iter().map(|p| (p.path.clone(), p.size, p.origin)).collect();
    assert_eq!(
        r1,
        [
            (
                d4.join("000000.pmem"),
                8 * MIB,
                PartOrigin::Directory { directory: 1, index: 0, exists: true }
            ),
            // Missing: where PMDK would recreate it (the first directory), with replica 0's size.
            (
                d3.join("000001.pmem"),
                4 * MIB,
                PartOrigin::Directory { directory: 0, index: 1, exists: false }
            ),
            (
                d4.join("000002.pmem"),
                2 * MIB,
                PartOrigin::Directory { directory: 1, index: 2, exists: true }
            ),
        ]
    );
    assert_eq!(set.replica_reservation_size(0), Some(3 << 30));
    assert_eq!(set.replica_reservation_size(1), Some(2 << 30));
    assert_eq!(set.replica_size(0), set.replica_size(1));
    assert_eq!(set.pool_size(), 14 * MIB);
}

#[test]
fn empty_directories_make_a_new_pool() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    let set = ok(&dir_set(&[("100M", &a), ("REPLICA", &a), ("200M", &b)], true))
        .resolve_directories()
        .unwrap();
    assert!(set.replicas.iter().all(|r| r.parts.is_empty()));
    assert_eq!(set.replica_size(0), Some(0));
    assert_eq!(set.pool_size(), 0);
    assert_eq!(set.replica_reservation_size(1), Some(200 * MIB));
    assert_eq!(set.replica_extents(0), Some(Vec::new()));
    // pmempool: "reservation pool size ... smaller than 8388608" goes by the reservation.
    set.validate(&Limits::PMEMOBJ).unwrap();
    // pmempool: "directory based pools are not supported for poolsets with headers".
    let plain = ok(&dir_set(&[("100M", &a)], false)).resolve_directories().unwrap();
    let err = plain.validate(&Limits::PMEMOBJ).unwrap_err();
    assert!(matches!(err, GrammarError::DirectoryNeedsSingleHeader { .. }));
    assert_message(&err, Some((2, 1)), &["SINGLEHDR", "directory"]);
}

#[test]
fn directories_and_files_do_not_mix() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    fs::create_dir(&d).unwrap();
    let f = tmp.path().join("f");
    for (lines, line, is_dir) in [
        (vec![("1G", d.as_path()), ("8M", f.as_path())], 4, false),
        (vec![("8M", f.as_path()), ("1G", d.as_path())], 4, true),
        (vec![("8M", f.as_path()), ("REPLICA", f.as_path()), ("1G", d.as_path())], 5, true),
        (vec![("1G", d.as_path()), ("REPLICA", f.as_path()), ("8M", f.as_path())], 5, false),
    ] {
        let err = ok(&dir_set(&lines, true)).resolve_directories().unwrap_err();
        assert!(
            matches!(err, GrammarError::MixedDirectoriesAndFiles { is_directory, first_line: 3, .. } if is_directory == is_dir),
            "{err:?}"
        );
        assert_message(&err, Some((line, 1)), &["cannot mix directories and files", "line 3"]);
    }
}

#[test]
fn same_directory_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    fs::create_dir(&d).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&d, &link).unwrap();
    let err = ok(&dir_set(&[("1G", &d), ("REPLICA", &d), ("1G", &link)], true))
        .resolve_directories()
        .unwrap_err();
    assert!(matches!(err, GrammarError::DuplicateDirectory { first_line: 3, .. }), "{err:?}");
    assert_message(&err, Some((5, 1)), &["duplicate directory", "line 3"]);
    // The same path spelled differently is caught by the parser already.
    let slash = PathBuf::from(format!("{}/./", d.display()));
    let text = dir_set(&[("1G", &d), ("REPLICA", &d), ("1G", &slash)], true);
    let err = parse_err(&text, (5, 4), &["duplicate part path", "line 3"]);
    assert!(matches!(err, GrammarError::DuplicatePath { first_line: 3, .. }));
}

#[test]
fn same_file_twice_through_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("f");
    write_file(&f, 10);
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&f, &link).unwrap();
    let hard = tmp.path().join("hard");
    fs::hard_link(&f, &hard).unwrap();
    for other in [&link, &hard] {
        let err = ok(&dir_set(&[("8M", &f), ("REPLICA", &f), ("8M", other)], false))
            .resolve_directories()
            .unwrap_err();
        assert!(matches!(err, GrammarError::DuplicatePath { first_line: 2, .. }), "{err:?}");
        assert_message(&err, Some((4, 1)), &["duplicate part path", "line 2"]);
    }
}

#[test]
fn bad_directory_entries() {
    for (names, word) in [
        (&["000000.pmem", "abc.pmem"][..], "not a part number"),
        (&["000000.pmem", "-1.pmem"][..], "not a part number"),
        (&["000000.pmem", "1.pmem", "000001.pmem"][..], "part number 1 is also"),
        (&["99999999999.pmem"][..], "too large"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        for name in names {
            write_file(&tmp.path().join(name), 4096);
        }
        let err = ok(&dir_set(&[("1G", tmp.path())], true)).resolve_directories().unwrap_err();
        assert!(matches!(err, GrammarError::BadDirectoryEntry { .. }), "{names:?}: {err:?}");
        assert_message(&err, Some((3, 1)), &["unexpected file", word]);
    }
}

#[test]
fn gap_in_directory_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    write_file(&a.join("000000.pmem"), 4096);
    write_file(&b.join("000000.pmem"), 4096);
    write_file(&a.join("000002.pmem"), 4096);
    let err = ok(&dir_set(&[("1G", &a), ("REPLICA", &a), ("1G", &b)], true))
        .resolve_directories()
        .unwrap_err();
    assert!(matches!(err, GrammarError::MissingDirectoryPart { index: 1, .. }), "{err:?}");
    assert_message(&err, Some((3, 1)), &["000001.pmem", "gap"]);
    // A huge part number alone is a gap too, found without allocating for it.
    let c = tmp.path().join("c");
    fs::create_dir(&c).unwrap();
    write_file(&c.join("4000000000.pmem"), 4096);
    let err = ok(&dir_set(&[("1G", &c)], true)).resolve_directories().unwrap_err();
    assert!(matches!(err, GrammarError::MissingDirectoryPart { index: 0, .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Files and errors
// ---------------------------------------------------------------------------------------------

#[test]
fn from_file_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.set");
    let err = PoolSet::from_file(&missing).unwrap_err();
    assert!(matches!(&err, GrammarError::Io { path, .. } if *path == missing));
    assert_message(&err, None, &["missing.set"]);
    assert!(std::error::Error::source(&err).is_some());

    let bad = tmp.path().join("bad.set");
    fs::write(&bad, b"PMEMPOOLSET\n# ok: \xff\n8M /a\n8M /b\xff\n").unwrap();
    let err = PoolSet::from_file(&bad).unwrap_err();
    assert!(matches!(err, GrammarError::InvalidUtf8 { line: 4, column: 6 }), "{err:?}");
    assert_message(&err, Some((4, 6)), &["UTF-8"]);
    assert!(std::error::Error::source(&err).is_none());

    let good = tmp.path().join("good.set");
    fs::write(&good, "PMEMPOOLSET\r\n8M /a\r\n").unwrap();
    assert_eq!(layout(&PoolSet::from_file(&good).unwrap()), vec![vec![(8 * MIB, "/a".into())]]);
}

// ---------------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }
}

const SEED_TEXT: &str = "PMEMPOOLSET\r\n\
                         OPTION SINGLEHDR # opt\n\
                         # comment\n\
                         \n\
                         100G /mountpoint0/myfile.part0\n\
                         200KiB /mountpoint1/myfile.part1\t# two\n\
                         REPLICA\n\
                         500MB /mountpoint3/mymirror.part0\n\
                         4097 /mountpoint3/mymirror.part1";

const ALPHABET: &[u8] =
    b" \t\r\n#/.+-0123456789BKMGTPkiEAUOREPLICAOPTIONSINGLEHDRNOHDRS\xff\xc3\x00";

/// Every parse either fails with a positioned, printable error or gives a set whose size math
/// works and whose canonical text parses back to it.
#[test]
fn mutated_texts_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seed = SEED_TEXT.as_bytes();
    let mut parsed = 0;
    for case in 0..6000 {
        let mut text = seed.to_vec();
        for _ in 0..=rng.below(4) {
            let at = rng.below(text.len() + 1);
            match rng.below(7) {
                0 => {
                    if at < text.len() {
                        text[at] = ALPHABET[rng.below(ALPHABET.len())];
                    }
                }
                1 => text.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
                2 => {
                    let end = (at + rng.below(12)).min(text.len());
                    text.drain(at..end);
                }
                3 => text.truncate(at),
                4 => {
                    // Duplicate a run of bytes (often whole lines).
                    let end = (at + rng.below(40)).min(text.len());
                    let run = text[at..end].to_vec();
                    let to = rng.below(text.len() + 1);
                    text.splice(to..to, run);
                }
                5 => {
                    let words: [&[u8]; 9] = [
                        b"REPLICA\n",
                        b"OPTION ",
                        b"#",
                        b"\r\n",
                        b" ",
                        b"8M /p",
                        b"REPLICA host remote.set\n",
                        b"OPTION NOHDRS\n",
                        b"18446744073709551615 /x\n",
                    ];
                    let word = words[rng.below(words.len())];
                    text.splice(at..at, word.iter().copied());
                }
                _ => {
                    if at < text.len() {
                        text[at] ^= 1 << rng.below(8);
                    }
                }
            }
        }
        if case % 3 == 0 {
            // Keep most inputs past the header line.
            text.splice(0..0, b"PMEMPOOLSET\n8M /seed\n".iter().copied());
        }
        match parse_bytes(&text) {
            Err(err) => {
                let message = err.to_string();
                assert!(!message.is_empty());
                let (line, column) = err.position().expect("parse errors have a position");
                assert!(line >= 1 && column >= 1, "{err:?}");
                assert!(line <= text.split(|&b| b == b'\n').count() + 1, "{err:?}");
            }
            Ok(set) => {
                parsed += 1;
                assert!(!set.replicas.is_empty());
                for r in 0..set.replicas.len() {
                    assert!(!set.replicas[r].parts.is_empty());
                    let extents = set.replica_extents(r).unwrap();
                    let sum: u64 = extents.iter().map(|e| e.len).sum();
                    assert_eq!(sum, set.replica_usable_size(r).unwrap());
                    assert!(set.replica_size(r).unwrap() >= sum);
                }
                assert!(set.pool_usable_size() <= set.pool_size());
                let canonical = set.to_text().unwrap();
                assert_eq!(parse(&canonical).unwrap(), set, "{canonical}");
            }
        }
    }
    assert!(parsed > 500, "only {parsed} mutated texts parsed: the mutations are too harsh");
}
