//! Running a command under `strace` and parsing what it prints.
//!
//! The options (see [`STRACE_OPTIONS`]): `-f` follows threads and children, `-y` annotates
//! every file descriptor with its path (`3</work/x>`, `AT_FDCWD</work>`), `-s 0` keeps the
//! quoted buffers short (paths are printed in full whatever `-s` says), `-e write=all`
//! hex-dumps every byte passed to `write`, `writev`, `pwrite64`, `pwritev` and `pwritev2`
//! (the data of the model), `--seccomp-bpf` stops the tracee only on the traced calls.

use crate::{Cmd, Error, Outcome};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The system calls traced: everything that changes a file or the namespace, moves a file
/// position, makes something durable, or copies, shares or drops a file descriptor. A `?`
/// lets `strace` skip a name this architecture lacks.
const TRACED: &[&str] = &[
    "open",
    "openat",
    "?openat2",
    "creat",
    "close",
    "?close_range",
    "dup",
    "dup2",
    "?dup3",
    "fcntl",
    "read",
    "readv",
    "write",
    "writev",
    "pwrite64",
    "pwritev",
    "?pwritev2",
    "lseek",
    "ftruncate",
    "truncate",
    "fallocate",
    "fsync",
    "fdatasync",
    "sync_file_range",
    "sync",
    "syncfs",
    "rename",
    "renameat",
    "?renameat2",
    "unlink",
    "unlinkat",
    "rmdir",
    "mkdir",
    "mkdirat",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "mknod",
    "mknodat",
    "mmap",
    "copy_file_range",
    "sendfile",
    "splice",
    "clone",
    "?clone3",
    "fork",
    "vfork",
    "execve",
    "chdir",
    "fchdir",
];

/// The fixed `strace` options, for documentation and error messages.
pub const STRACE_OPTIONS: &str = "-f -qq -y -s 0 --seccomp-bpf -e signal=none -e write=all";

/// One completed system call as `strace` printed it.
#[derive(Debug, Clone)]
pub(crate) struct Syscall {
    /// The thread that made it.
    pub tid: u32,
    /// Its name.
    pub name: String,
    /// Its arguments, split at top-level commas, as printed (fd annotations kept).
    pub args: Vec<String>,
    /// What follows `= `: the return value and its annotation or error.
    pub ret: String,
    /// The bytes of the hex dump that followed it (writes only).
    pub data: Vec<u8>,
    /// The line of the trace it ended on, for error messages.
    pub line: usize,
}

impl Syscall {
    /// The return value, or `None` for `?`.
    pub fn ret_value(&self) -> Option<i64> {
        parse_int(self.ret.split_whitespace().next()?.split('<').next()?)
    }

    /// The argument `i`, or an error naming the call.
    pub fn arg(&self, i: usize) -> Result<&str, Error> {
        self.args.get(i).map(String::as_str).ok_or_else(|| self.error(format!("no argument {i}")))
    }

    /// A parse error naming this call.
    pub fn error(&self, detail: impl Into<String>) -> Error {
        Error::Parse {
            line: self.line,
            text: format!("{}({}) = {}", self.name, self.args.join(", "), self.ret),
            detail: detail.into(),
        }
    }
}

/// Checks that `strace` runs.
///
/// # Errors
/// [`Error::StraceMissing`].
pub(crate) fn check_strace() -> Result<(), Error> {
    match Command::new("strace").arg("-V").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(Error::StraceMissing(format!(
            "`strace -V` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        Err(e) => Err(Error::StraceMissing(format!("cannot run `strace`: {e}"))),
    }
}

/// Runs `cmd` (in `cwd`) under `strace`, writing the trace to `trace`.
///
/// # Errors
/// [`Error::StraceMissing`] when `strace` cannot be started; [`Error::Io`] otherwise.
pub(crate) fn run_traced(cmd: &Cmd, cwd: &Path, trace: &Path) -> Result<Outcome, Error> {
    let mut strace = Command::new("strace");
    strace.args(STRACE_OPTIONS.split(' '));
    strace.arg("-e").arg(format!("trace={}", TRACED.join(",")));
    strace.arg("-o").arg(trace).arg("--").arg(&cmd.program).args(&cmd.args);
    for (k, v) in &cmd.env {
        strace.env(k, v);
    }
    strace.current_dir(cwd).stdin(std::process::Stdio::null());
    let out = strace.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::StraceMissing(format!("cannot run `strace`: {e}"))
        } else {
            Error::Io { path: PathBuf::from("strace"), op: "run", source: e }
        }
    })?;
    Ok(Outcome { code: out.status.code(), stdout: out.stdout, stderr: out.stderr })
}

/// Parses a whole trace (`strace -f -o` output) into completed calls, in the order they
/// returned. Calls split by `<unfinished ...>` are joined at their `resumed` line; hex dump
/// lines are attached to the call they follow; signals and exits are skipped.
///
/// # Errors
/// [`Error::Parse`] for a call line that cannot be split into name, arguments and result.
pub(crate) fn parse(text: &str) -> Result<Vec<Syscall>, Error> {
    let mut out: Vec<Syscall> = Vec::new();
    let mut unfinished: HashMap<u32, String> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let no = i + 1;
        if let Some(rest) = line.strip_prefix(" | ") {
            if let Some(last) = out.last_mut() {
                dump_bytes(rest, &mut last.data);
            }
            continue;
        }
        if line.starts_with(" * ") {
            continue;
        }
        let Some((tid, rest)) = line.split_once(' ') else { continue };
        let Ok(tid) = tid.parse::<u32>() else { continue };
        let rest = rest.trim_start();
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        let full = if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, after)) = resumed.split_once(" resumed>") else {
                return Err(Error::Parse {
                    line: no,
                    text: line.to_owned(),
                    detail: "a resumed line without its name".into(),
                });
            };
            let Some(mut start) = unfinished.remove(&tid) else { continue };
            start.push_str(after);
            start
        } else if let Some(start) = rest.strip_suffix(" <unfinished ...>") {
            unfinished.insert(tid, start.to_owned());
            continue;
        } else {
            rest.to_owned()
        };
        let (name, args, result) = split_call(&full).ok_or_else(|| Error::Parse {
            line: no,
            text: full.clone(),
            detail: "not `name(args) = result`".into(),
        })?;
        out.push(Syscall { tid, name, args, ret: result, data: Vec::new(), line: no });
    }
    Ok(out)
}

/// Appends the bytes of one hex dump line (after ` | `): `OFFSET  xx xx ... xx  ascii |`.
/// The hex area is 16 columns of `xx ` with one more space after the eighth: 49 characters.
fn dump_bytes(rest: &str, data: &mut Vec<u8>) {
    let Some((_, hex)) = rest.split_once("  ") else { return };
    let area = hex.get(..49.min(hex.len())).unwrap_or(hex);
    for tok in area.split_whitespace() {
        match u8::from_str_radix(tok, 16) {
            Ok(b) if tok.len() == 2 => data.push(b),
            _ => break,
        }
    }
}

/// Splits `name(args) = ret`: the arguments at top-level commas (quotes, brackets, braces,
/// comments and `<...>` annotations respected).
fn split_call(s: &str) -> Option<(String, Vec<String>, String)> {
    let open = s.find('(')?;
    let name = s.get(..open)?.trim().to_owned();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let bytes = s.as_bytes();
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut i = open + 1;
    let end = loop {
        let c = *bytes.get(i)?;
        match c {
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match *bytes.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                cur.push_str(s.get(start..=i)?);
            }
            b'<' if cur.ends_with(|ch: char| ch.is_ascii_alphanumeric() || ch == '_') => {
                let close = s.get(i..)?.find('>')? + i;
                cur.push_str(s.get(i..=close)?);
                i = close;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let close = s.get(i..)?.find("*/")? + i;
                i = close + 1;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                cur.push(c as char);
            }
            b')' if depth == 0 => break i,
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                cur.push(c as char);
            }
            b',' if depth == 0 => {
                args.push(cur.trim().to_owned());
                cur.clear();
            }
            _ => {
                // Multi-byte characters only appear inside quotes and annotations.
                cur.push(c as char);
            }
        }
        i += 1;
    };
    if !cur.trim().is_empty() || !args.is_empty() {
        args.push(cur.trim().to_owned());
    }
    let after = s.get(end + 1..)?.trim_start();
    let ret = after.strip_prefix('=')?.trim().to_owned();
    Some((name, args, ret))
}

/// Parses a decimal or `0x` hexadecimal integer, with an optional sign.
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let v = match digits.strip_prefix("0x") {
        Some(h) => i64::from_str_radix(h, 16).ok()?,
        None => digits.parse::<i64>().ok()?,
    };
    Some(if neg { -v } else { v })
}

/// Unquotes a C string literal as `strace` prints it (`"a\nb\x00"`), ignoring a trailing
/// `...` (a string cut by `-s`).
pub(crate) fn unquote(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let s = s.strip_suffix("...").unwrap_or(s);
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    unescape(inner)
}

/// Undoes `strace`'s escapes (`\n`, `\t`, `\"`, `\\`, `\xNN`, octal `\NNN`).
pub(crate) fn unescape(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&c) = bytes.get(at) {
        if c != b'\\' {
            out.push(c);
            at += 1;
            continue;
        }
        let esc = *bytes.get(at + 1)?;
        at += 2;
        let simple = match esc {
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'v' => Some(0x0b),
            b'f' => Some(0x0c),
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'"' | b'\\' | b'\'' => Some(esc),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
        } else if esc == b'x' {
            let hex = text.get(at..at + 2)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 2;
        } else if esc.is_ascii_digit() {
            let mut value = u32::from(esc - b'0');
            let mut digits = 1;
            while digits < 3 && bytes.get(at).is_some_and(|d| (b'0'..=b'7').contains(d)) {
                value = value * 8 + u32::from(bytes[at] - b'0');
                at += 1;
                digits += 1;
            }
            out.push(u8::try_from(value).ok()?);
        } else {
            return None;
        }
    }
    Some(out)
}

/// A file descriptor argument: its number (`AT_FDCWD` is -100) and the path `-y` printed
/// (`None` for pipes, sockets and the like, and when absent), with whether it was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FdArg {
    /// The number.
    pub fd: i64,
    /// The annotated path, when it is one.
    pub path: Option<PathBuf>,
    /// The annotation ended in ` (deleted)`.
    pub deleted: bool,
}

/// `AT_FDCWD` as a number.
pub(crate) const AT_FDCWD: i64 = -100;

/// Parses `3</path>`, `AT_FDCWD</cwd>`, `5<pipe:[1234]>` or a bare number.
pub(crate) fn fd_arg(s: &str) -> Option<FdArg> {
    let s = s.trim();
    let (num, ann) = match s.find('<') {
        Some(at) => (s.get(..at)?, Some(s.get(at + 1..)?.strip_suffix('>')?)),
        None => (s, None),
    };
    let fd = if num == "AT_FDCWD" { AT_FDCWD } else { parse_int(num)? };
    let (path, deleted) = match ann {
        Some(a) if a.starts_with('/') => {
            let (a, deleted) = match a.strip_suffix(" (deleted)") {
                Some(x) => (x, true),
                None => (a, false),
            };
            (Some(bytes_path(unescape(a)?)), deleted)
        }
        _ => (None, false),
    };
    Some(FdArg { fd, path, deleted })
}

/// A path from raw bytes.
pub(crate) fn bytes_path(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"27836 openat(AT_FDCWD</tmp/st>, "a.tmp", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0644) = 3</tmp/st/a.tmp>
27836 write(3</tmp/st/a.tmp>, ""..., 20) = 20
 | 00000  68 65 6c 6c 6f 20 77 6f  72 6c 64 0a 68 65 6c 6c  hello world.hell |
 | 00010  6f 20 77 6f                                       o wo             |
27836 writev(3</tmp/st/a.tmp>, [...], 2) = 7
 * 3 bytes in buffer 0
 | 00000  61 62 63                                          abc              |
 * 4 bytes in buffer 1
 | 00000  64 65 66 67                                       defg             |
27837 fsync(3</tmp/st/a.tmp> <unfinished ...>
27836 rename("a\"b", "c,d)") = 0
27837 <... fsync resumed>)              = 0
27836 getdents64(3</tmp/st/w>, 0x56332503d570 /* 4 entries */, 32768) = 96
27836 +++ exited with 0 +++
"#;

    #[test]
    fn parses_calls_dumps_and_resumed_lines() {
        let calls = parse(SAMPLE).unwrap();
        let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["openat", "write", "writev", "rename", "fsync", "getdents64"]);
        assert_eq!(calls[0].args.len(), 4);
        assert_eq!(calls[0].ret_value(), Some(3));
        assert_eq!(fd_arg(&calls[0].ret).unwrap().path.unwrap(), Path::new("/tmp/st/a.tmp"));
        assert_eq!(calls[1].data, b"hello world\nhello wo");
        assert_eq!(calls[2].data, b"abcdefg");
        assert_eq!(unquote(&calls[3].args[0]).unwrap(), b"a\"b");
        assert_eq!(unquote(&calls[3].args[1]).unwrap(), b"c,d)");
        assert_eq!(calls[4].tid, 27837);
        assert_eq!(calls[4].ret_value(), Some(0));
        assert_eq!(calls[5].args.len(), 3);
    }

    #[test]
    fn fd_args_and_escapes() {
        let a = fd_arg("AT_FDCWD</tmp/x>").unwrap();
        assert_eq!((a.fd, a.path.as_deref()), (AT_FDCWD, Some(Path::new("/tmp/x"))));
        let b = fd_arg("7</tmp/y (deleted)>").unwrap();
        assert!(b.deleted);
        assert_eq!(fd_arg("5<pipe:[123]>").unwrap().path, None);
        assert_eq!(unescape(r"\x41\101\n\\").unwrap(), b"AA\n\\");
        assert_eq!(parse_int("-1"), Some(-1));
        assert_eq!(parse_int("0x1f"), Some(31));
    }
}
