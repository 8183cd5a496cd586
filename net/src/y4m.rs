//! `--source y4m:FILE`: a YUV4MPEG2 file played in a loop as an avatar (demos, benches).
//!
//! Only 8-bit 4:2:0 files (`C420jpeg`, `C420`, `C420paldv`, `C420mpeg2`, or no
//! `C` tag) are read; anything else is refused at start with the tag named.
//! Frames are read from disk one at a time on the source's thread, so a file
//! of any length costs one frame of memory.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use mio::Waker;
use portcast_engine::encoder::EncoderSettings;
use portcast_engine::pattern::I420;
use portcast_engine::{AvatarId, Rung};

use crate::source::{self, Frames, SourceCounters, SourceEvent, SourceHandle};

/// Longest header or FRAME line accepted.
const MAX_LINE: usize = 1024;

/// An avatar played from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSourceSpec {
    /// The avatar id viewers ask for.
    pub name: AvatarId,
    /// The Y4M file.
    pub path: PathBuf,
    /// Encoder bitrate in bit/s; `None` picks ~0.07 bit per pixel per frame.
    pub bitrate_bps: Option<u32>,
}

/// Opens the file (errors surface here, at start) and starts its source
/// thread, with the lower renditions of `ladder`.
pub fn spawn(
    spec: &FileSourceSpec,
    ladder: &[Rung],
    counters: SourceCounters,
    tx: SyncSender<SourceEvent>,
    waker: Arc<Waker>,
) -> Result<SourceHandle, Y4mError> {
    let file = Y4mFile::open(&spec.path)?;
    let (width, height, fps) = (file.width(), file.height(), file.fps());
    let auto = u64::from(width) * u64::from(height) * u64::from(fps) * 7 / 100;
    let settings = EncoderSettings {
        width,
        height,
        fps,
        bitrate_bps: spec
            .bitrate_bps
            .unwrap_or(auto.clamp(300_000, 8_000_000) as u32),
        threads: 1,
    };
    source::spawn_frames(
        spec.name.clone(),
        settings,
        ladder,
        Box::new(file),
        counters,
        tx,
        waker,
    )
    .map_err(|e| Y4mError::Thread(spec.path.clone(), e))
}

/// Why a Y4M file cannot be streamed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Y4mError {
    /// The file could not be opened or read.
    Io(PathBuf, io::Error),
    /// The file does not start with `YUV4MPEG2 `.
    NotY4m(PathBuf),
    /// The header lacks `W` or `H`, or they are not usable.
    BadSize(PathBuf, String),
    /// A colour space other than 8-bit 4:2:0.
    UnsupportedColour(PathBuf, String),
    /// The frame rate tag is malformed.
    BadFrameRate(PathBuf, String),
    /// The file holds no complete frame, or a frame header is malformed.
    BadFrame(PathBuf, String),
    /// The thread that plays the file could not start.
    Thread(PathBuf, io::Error),
}

impl fmt::Display for Y4mError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Y4mError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Y4mError::NotY4m(p) => write!(
                f,
                "{}: not a Y4M file (it must start with \"YUV4MPEG2 \")",
                p.display()
            ),
            Y4mError::BadSize(p, m) => write!(f, "{}: {m}", p.display()),
            Y4mError::UnsupportedColour(p, c) => write!(
                f,
                "{}: colour space C{c} is not supported; convert to 8-bit 4:2:0, e.g. \
                 ffmpeg -i IN -pix_fmt yuv420p OUT.y4m",
                p.display()
            ),
            Y4mError::BadFrameRate(p, r) => {
                write!(
                    f,
                    "{}: frame rate F{r} is not N:D with N, D > 0",
                    p.display()
                )
            }
            Y4mError::BadFrame(p, m) => write!(f, "{}: {m}", p.display()),
            Y4mError::Thread(p, e) => {
                write!(f, "{}: cannot start its source thread: {e}", p.display())
            }
        }
    }
}

impl std::error::Error for Y4mError {}

/// An open Y4M file, looping.
#[derive(Debug)]
pub struct Y4mFile {
    path: PathBuf,
    reader: BufReader<File>,
    width: usize,
    height: usize,
    fps: (u32, u32),
    data_start: u64,
    frame: Vec<u8>,
    frames_read: u64,
}

impl Y4mFile {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Y4mFile, Y4mError> {
        let io_err = |e| Y4mError::Io(path.to_path_buf(), e);
        let file = File::open(path).map_err(io_err)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let header = read_line(&mut reader).map_err(io_err)?;
        let header = header
            .strip_prefix("YUV4MPEG2 ")
            .ok_or_else(|| Y4mError::NotY4m(path.to_path_buf()))?;
        let (mut width, mut height, mut fps) = (None, None, (30, 1));
        for tag in header.split_ascii_whitespace() {
            let (key, value) = tag.split_at(1);
            match key {
                "W" => width = value.parse::<usize>().ok(),
                "H" => height = value.parse::<usize>().ok(),
                "F" => {
                    let bad = || Y4mError::BadFrameRate(path.to_path_buf(), value.to_string());
                    let (n, d) = value.split_once(':').ok_or_else(bad)?;
                    let n: u32 = n.parse().map_err(|_| bad())?;
                    let d: u32 = d.parse().map_err(|_| bad())?;
                    if n == 0 || d == 0 {
                        return Err(bad());
                    }
                    fps = (n, d);
                }
                "C" if !matches!(value, "420" | "420jpeg" | "420paldv" | "420mpeg2") => {
                    return Err(Y4mError::UnsupportedColour(
                        path.to_path_buf(),
                        value.to_string(),
                    ));
                }
                _ => {}
            }
        }
        let (Some(width), Some(height)) = (width, height) else {
            return Err(Y4mError::BadSize(
                path.to_path_buf(),
                "header has no W (width) or H (height) tag".into(),
            ));
        };
        if width % 2 != 0
            || height % 2 != 0
            || width < 16
            || height < 16
            || width > 3840
            || height > 2160
        {
            return Err(Y4mError::BadSize(
                path.to_path_buf(),
                format!("{width}x{height} is not usable: even sizes 16-3840 by 16-2160 only"),
            ));
        }
        let data_start = reader.stream_position().map_err(io_err)?;
        let mut file = Y4mFile {
            path: path.to_path_buf(),
            reader,
            width,
            height,
            fps,
            data_start,
            frame: vec![0; width * height * 3 / 2],
            frames_read: 0,
        };
        // Fail at start, not on the source thread, if there is no frame at all.
        file.next_frame()?;
        file.rewind()?;
        Ok(file)
    }

    /// Picture width.
    pub fn width(&self) -> u32 {
        self.width as u32
    }

    /// Picture height.
    pub fn height(&self) -> u32 {
        self.height as u32
    }

    /// Frame rate rounded to whole frames per second, at least 1 and at most 60.
    pub fn fps(&self) -> u32 {
        let (n, d) = self.fps;
        ((n + d / 2) / d).clamp(1, 60)
    }

    fn rewind(&mut self) -> Result<(), Y4mError> {
        self.reader
            .seek(SeekFrom::Start(self.data_start))
            .map_err(|e| Y4mError::Io(self.path.clone(), e))?;
        self.frames_read = 0;
        Ok(())
    }

    /// Reads the next frame into the buffer, going back to the first after the last.
    fn next_frame(&mut self) -> Result<(), Y4mError> {
        for attempt in 0..2 {
            let line =
                read_line(&mut self.reader).map_err(|e| Y4mError::Io(self.path.clone(), e))?;
            if line.is_empty() && attempt == 0 && self.frames_read > 0 {
                self.rewind()?;
                continue;
            }
            if !line.starts_with("FRAME") {
                return Err(Y4mError::BadFrame(
                    self.path.clone(),
                    format!("frame {} has no FRAME header", self.frames_read),
                ));
            }
            return match self.reader.read_exact(&mut self.frame) {
                Ok(()) => {
                    self.frames_read += 1;
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && self.frames_read > 0 => {
                    // A cut last frame: loop from the start instead.
                    self.rewind()?;
                    continue;
                }
                Err(e) => Err(Y4mError::Io(self.path.clone(), e)),
            };
        }
        Err(Y4mError::BadFrame(
            self.path.clone(),
            "the file holds no complete frame".into(),
        ))
    }
}

impl Frames for Y4mFile {
    fn describe(&self) -> String {
        format!("{} {}x{}", self.path.display(), self.width, self.height)
    }

    fn frame(&mut self, _index: u64, _at: Duration, _clock_ms: u64) -> Result<I420<'_>, String> {
        self.next_frame().map_err(|e| e.to_string())?;
        let (w, h) = (self.width, self.height);
        let (y, chroma) = self.frame.split_at(w * h);
        let (u, v) = chroma.split_at(w * h / 4);
        Ok(I420 {
            y,
            u,
            v,
            width: w,
            height: h,
            strides: (w, w / 2, w / 2),
        })
    }
}

/// Reads one `\n`-terminated line (without it), bounded; empty at end of file.
fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    r.by_ref()
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() >= MAX_LINE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "header line longer than 1024 bytes",
        ));
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcast_engine::pattern::{read_frame_counter, TestPattern};

    fn write_y4m(name: &str, header: &str, frames: u64) -> PathBuf {
        let path = std::env::temp_dir().join(format!("portcast-y4m-{}-{name}", std::process::id()));
        let mut bytes = format!("YUV4MPEG2 {header}\n").into_bytes();
        let mut p = TestPattern::new(160, 96).unwrap();
        for i in 0..frames {
            bytes.extend_from_slice(b"FRAME\n");
            let pic = p.render(i, 0);
            bytes.extend_from_slice(pic.y);
            bytes.extend_from_slice(pic.u);
            bytes.extend_from_slice(pic.v);
        }
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_420_file_plays_its_frames_in_a_loop() {
        let path = write_y4m("loop.y4m", "W160 H96 F25:1 Ip A1:1 C420jpeg", 3);
        let mut f = Y4mFile::open(&path).unwrap();
        assert_eq!((f.width(), f.height(), f.fps()), (160, 96, 25));
        let seen: Vec<u64> = (0..7)
            .map(|i| read_frame_counter(&f.frame(i, Duration::ZERO, 0).unwrap()).unwrap())
            .collect();
        assert_eq!(seen, vec![0, 1, 2, 0, 1, 2, 0]);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn other_colour_spaces_and_empty_files_are_refused_with_the_reason() {
        let p = write_y4m("444.y4m", "W160 H96 F30:1 C444", 1);
        let e = Y4mFile::open(&p).unwrap_err().to_string();
        assert!(e.contains("C444") && e.contains("4:2:0"), "{e}");
        let p2 = write_y4m("empty.y4m", "W160 H96 F30:1", 0);
        let e = Y4mFile::open(&p2).unwrap_err().to_string();
        assert!(
            e.contains("FRAME") || e.contains("no complete frame"),
            "{e}"
        );
        let p3 = std::env::temp_dir().join(format!("portcast-y4m-{}-txt", std::process::id()));
        std::fs::write(&p3, "hello\n").unwrap();
        assert!(matches!(Y4mFile::open(&p3), Err(Y4mError::NotY4m(_))));
        for p in [p, p2, p3] {
            let _ = std::fs::remove_file(p);
        }
    }
}
