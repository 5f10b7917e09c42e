//! `--max-frame`, shared by `broker` and `consume`: a size between the protocol's minimum and
//! the most a frame's length prefix can say, checked when the flags are parsed.

use flowgate_observe::units::Size;
use flowgate_proto::MIN_MAX_FRAME;

/// Parses a `--max-frame` value such as `1MiB`.
pub(crate) fn max_frame(s: &str) -> Result<u32, String> {
    let size: Size = s.parse()?;
    u32::try_from(size.0)
        .ok()
        .filter(|m| *m >= MIN_MAX_FRAME)
        .ok_or_else(|| {
            format!(
                "--max-frame {size} ({} bytes) must be between {MIN_MAX_FRAME} and {} bytes",
                size.0,
                u32::MAX
            )
        })
}
