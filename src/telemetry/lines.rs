//! The two log line formats, written field by field into the line buffer.
//!
//! The lines are the ones tracing-subscriber's own formatters write (`--log-format text`:
//! `2026-11-23T15:48:54.239957Z  INFO review uid=… outcome="patched" …`; `json`: one object
//! with `timestamp`, `level`, `message`, the event's fields and `target`). Those formatters
//! pass every field name through a styling layer even with colours off and format the date
//! anew for every line; with a line per review, that made the log the costliest part of a
//! pass-through review after reading its JSON. Here the date changes once a second and
//! everything else is a plain write. Spans are not printed: tandem opens none, and an
//! event a library logs inside one of its own spans is printed without the span's fields.

use std::{
    cell::Cell,
    fmt::{self, Write as _},
    time::{SystemTime, UNIX_EPOCH},
};

use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

use crate::config::LogFormat;

/// A [`FormatEvent`] for `--log-format`.
pub struct Lines(pub LogFormat);

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let level = metadata.level().as_str();
        let mut stamp = [0; STAMP_LEN];
        let stamp = timestamp(SystemTime::now(), &mut stamp);
        match self.0 {
            LogFormat::Text => {
                writer.write_str(stamp)?;
                // One space, then the level right-aligned in five columns.
                writer.write_str(&"      "[level.len()..])?;
                writer.write_str(level)?;
                let mut fields = Text {
                    writer: &mut writer,
                    result: Ok(()),
                };
                event.record(&mut fields);
                fields.result?;
            }
            LogFormat::Json => {
                writer.write_str(r#"{"timestamp":""#)?;
                writer.write_str(stamp)?;
                writer.write_str(r#"","level":""#)?;
                writer.write_str(level)?;
                writer.write_char('"')?;
                let mut fields = Json {
                    writer: &mut writer,
                    result: Ok(()),
                };
                event.record(&mut fields);
                fields.result?;
                writer.write_str(r#","target":""#)?;
                Escaped(&mut writer).write_str(metadata.target())?;
                writer.write_str("\"}")?;
            }
        }
        writer.write_char('\n')
    }
}

/// ` message key=value…`: strings quoted and escaped (`{:?}`), `%display` values as they
/// are, numbers and booleans plain.
struct Text<'w, 'a> {
    writer: &'w mut Writer<'a>,
    result: fmt::Result,
}

impl Text<'_, '_> {
    /// ` key=` then `value`; the message without its key.
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.writer.write_char(' ').and_then(|()| {
                if field.name() != "message" {
                    self.writer.write_str(field.name())?;
                    self.writer.write_char('=')?;
                }
                value(self.writer)
            });
        }
    }
}

impl Visit for Text<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, |w| w.write_str(value));
        } else {
            self.field(field, |w| write!(w, "{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| write!(w, "{value:?}"));
    }
}

/// `,"key":value…`: numbers and booleans as JSON numbers and booleans, everything else
/// as a JSON string.
struct Json<'w, 'a> {
    writer: &'w mut Writer<'a>,
    result: fmt::Result,
}

impl Json<'_, '_> {
    /// `,"key":` then `value` as it writes itself.
    fn plain(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.writer.write_str(",\"").and_then(|()| {
                Escaped(&mut *self.writer).write_str(field.name())?;
                self.writer.write_str("\":")?;
                value(self.writer)
            });
        }
    }

    /// `,"key":"value"`, with `value` escaped as it is written.
    fn string(
        &mut self,
        field: &Field,
        value: impl FnOnce(&mut Escaped<'_, Writer<'_>>) -> fmt::Result,
    ) {
        self.plain(field, |w| {
            w.write_char('"')?;
            value(&mut Escaped(&mut *w))?;
            w.write_char('"')
        });
    }
}

impl Visit for Json<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, |w| w.write_str(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.plain(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.plain(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.plain(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.plain(field, |w| write!(w, "{value}"));
        } else {
            self.string(field, |w| write!(w, "{value}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.string(field, |w| write!(w, "{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.string(field, |w| write!(w, "{value:?}"));
    }
}

/// Writes what it is given as the inside of a JSON string.
struct Escaped<'w, W: fmt::Write>(&'w mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..0x20 => "",
                _ => continue,
            };
            self.0.write_str(&text[plain..at])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = at + 1;
        }
        self.0.write_str(&text[plain..])
    }
}

/// `2026-11-23T15:48:54.239957Z`.
const STAMP_LEN: usize = 27;

thread_local! {
    /// The date and time to the second of the last line this thread wrote, formatted.
    static SECOND: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
}

/// `now` in RFC 3339, UTC, to the microsecond, written into `out`.
fn timestamp(now: SystemTime, out: &mut [u8; STAMP_LEN]) -> &str {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != seconds {
        let time = i64::try_from(seconds)
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let mut text = String::with_capacity(20);
        let _ = write!(
            text,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
            time.year(),
            u8::from(time.month()),
            time.day(),
            time.hour(),
            time.minute(),
            time.second()
        );
        prefix.copy_from_slice(&text.as_bytes()[..20]);
        SECOND.set((seconds, prefix));
    }
    out[..20].copy_from_slice(&prefix);
    let mut micros = since.subsec_micros();
    for digit in out[20..26].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out[26] = b'Z';
    std::str::from_utf8(out).expect("ASCII digits and punctuation")
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_in_utc_to_the_microsecond() {
        let mut out = [0; STAMP_LEN];
        let at = UNIX_EPOCH + Duration::from_micros(1_795_448_934_000_007);
        assert_eq!(timestamp(at, &mut out), "2026-11-23T15:48:54.000007Z");
        // The same second again (from the cache), then the next one.
        let later = at + Duration::from_micros(239_950);
        assert_eq!(timestamp(later, &mut out), "2026-11-23T15:48:54.239957Z");
        let next = at + Duration::from_secs(1);
        assert_eq!(timestamp(next, &mut out), "2026-11-23T15:48:55.000007Z");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        Escaped(&mut out)
            .write_str("a \"q\" \\ line\nend\u{1}é")
            .unwrap();
        let parsed: String = serde_json::from_str(&format!("\"{out}\"")).unwrap();
        assert_eq!(parsed, "a \"q\" \\ line\nend\u{1}é");
    }

    /// Collects what the formatter writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn line(format: LogFormat) -> String {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .event_format(Lines(format))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                uid = %"u-1",
                outcome = "patched",
                note = "say \"hi\"",
                patch_bytes = 12usize,
                delta = -3i64,
                dry_run = false,
                error = &std::io::Error::other("gone") as &dyn std::error::Error,
                "review {}",
                7
            );
        });
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn text_lines_read_like_tracing_subscribers() {
        let line = line(LogFormat::Text);
        let (stamp, rest) = line.split_at(STAMP_LEN);
        assert!(stamp.ends_with('Z'), "{line}");
        assert_eq!(
            rest,
            "  WARN review 7 uid=u-1 outcome=\"patched\" note=\"say \\\"hi\\\"\" patch_bytes=12 delta=-3 dry_run=false error=gone\n"
        );
    }

    #[test]
    fn json_lines_are_objects_with_typed_fields() {
        let line = line(LogFormat::Json);
        assert!(line.ends_with("}\n") && line.lines().count() == 1, "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "WARN");
        assert_eq!(value["message"], "review 7");
        assert_eq!(value["uid"], "u-1");
        assert_eq!(value["outcome"], "patched");
        assert_eq!(value["note"], "say \"hi\"");
        assert_eq!(value["patch_bytes"], 12);
        assert_eq!(value["delta"], -3);
        assert_eq!(value["dry_run"], false);
        assert_eq!(value["error"], "gone");
        assert_eq!(value["target"], module_path!());
        let stamp = value["timestamp"].as_str().unwrap();
        assert_eq!(stamp.len(), STAMP_LEN, "{stamp}");
    }
}
