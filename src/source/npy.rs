//! NumPy `.npy` matrices of float16, float32 or float64 (what clip-retrieval,
//! `np.save` and most embedding scripts write), read in chunks of rows so a
//! multi-GB part never sits in memory twice.
//!
//! The format is a fixed 10–12 byte preamble, a Python-dict header and the raw
//! array: small enough that no crate is needed (the main crate's
//! `output::npy` reads and writes float32 only, whole).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context, bail};

/// The element type of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NpyDtype {
    F16,
    F32,
    F64,
}

impl NpyDtype {
    fn size(self) -> usize {
        match self {
            NpyDtype::F16 => 2,
            NpyDtype::F32 => 4,
            NpyDtype::F64 => 8,
        }
    }
}

/// A 2-D `.npy` opened for reading, positioned at its first row.
pub(super) struct NpyReader {
    reader: BufReader<File>,
    pub rows: u64,
    pub cols: usize,
    pub dtype: NpyDtype,
    big_endian: bool,
    rows_left: u64,
    bytes: Vec<u8>,
}

/// Parses the header dict: `{'descr': '<f2', 'fortran_order': False, 'shape': (N, D), }`.
fn parse_header(header: &str) -> Result<(NpyDtype, bool, bool, Vec<u64>), String> {
    let value_of = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = value_of("descr").ok_or("no 'descr' in the header")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or("unreadable 'descr'")?;
    let (big_endian, code) = match descr.as_bytes().first() {
        Some(b'<') | Some(b'|') | Some(b'=') => (false, &descr[1..]),
        Some(b'>') => (true, &descr[1..]),
        _ => (false, descr),
    };
    let dtype = match code {
        "f2" | "e" => NpyDtype::F16,
        "f4" | "f" => NpyDtype::F32,
        "f8" | "d" => NpyDtype::F64,
        other => {
            return Err(format!(
                "element type '{other}' is not float16, float32 or float64"
            ));
        }
    };
    let fortran = value_of("fortran_order")
        .ok_or("no 'fortran_order' in the header")?
        .starts_with("True");
    let shape = value_of("shape").ok_or("no 'shape' in the header")?;
    let shape = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("unreadable 'shape'")?;
    let dims = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| format!("unreadable shape ({shape})"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((dtype, big_endian, fortran, dims))
}

impl NpyReader {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let bad =
            |why: &str| anyhow::anyhow!("{} is not a readable .npy file: {why}", path.display());
        let mut magic = [0u8; 8];
        reader
            .read_exact(&mut magic)
            .map_err(|_| bad("too short"))?;
        if &magic[..6] != b"\x93NUMPY" {
            return Err(bad("it does not start with the .npy magic bytes"));
        }
        let header_len = match magic[6] {
            1 => {
                let mut b = [0u8; 2];
                reader.read_exact(&mut b).map_err(|_| bad("too short"))?;
                u16::from_le_bytes(b) as u64
            }
            2 | 3 => {
                let mut b = [0u8; 4];
                reader.read_exact(&mut b).map_err(|_| bad("too short"))?;
                u32::from_le_bytes(b) as u64
            }
            v => return Err(bad(&format!("format version {v} is not known"))),
        };
        let preamble = if magic[6] == 1 { 10 } else { 12 };
        if header_len > 1 << 20 || preamble + header_len > file_len {
            return Err(bad("its header is longer than the file"));
        }
        let mut header = vec![0u8; header_len as usize];
        reader
            .read_exact(&mut header)
            .map_err(|_| bad("truncated header"))?;
        let header = String::from_utf8_lossy(&header);
        let (dtype, big_endian, fortran, dims) = parse_header(&header).map_err(|e| bad(&e))?;
        if fortran {
            return Err(bad(
                "it is in Fortran (column-major) order; save it with np.save(path, np.ascontiguousarray(a))",
            ));
        }
        let (rows, cols) = match dims.as_slice() {
            [rows, cols] => (*rows, *cols),
            _ => {
                return Err(bad(&format!(
                    "it has shape {dims:?}; expected a 2-D matrix (one row per image)"
                )));
            }
        };
        let cols = usize::try_from(cols).map_err(|_| bad("too many columns"))?;
        let need = rows
            .checked_mul(cols as u64)
            .and_then(|n| n.checked_mul(dtype.size() as u64))
            .and_then(|n| n.checked_add(preamble + header_len))
            .ok_or_else(|| bad("its shape overflows"))?;
        if file_len < need {
            bail!(
                "{} is truncated: its header says {rows} x {cols} values ({need} bytes) but the file has {file_len} bytes; re-export it",
                path.display()
            );
        }
        Ok(Self {
            reader,
            rows,
            cols,
            dtype,
            big_endian,
            rows_left: rows,
            bytes: Vec::new(),
        })
    }

    /// Reads the next `n` rows (fewer at the end) as raw little-endian bytes
    /// of the file's dtype; returns how many rows it read.
    pub fn read_rows(&mut self, n: usize) -> std::io::Result<(usize, &[u8])> {
        let n = (n as u64).min(self.rows_left) as usize;
        let row_bytes = self.cols * self.dtype.size();
        self.bytes.resize(n * row_bytes, 0);
        self.reader.read_exact(&mut self.bytes)?;
        if self.big_endian {
            for value in self.bytes.chunks_exact_mut(self.dtype.size()) {
                value.reverse();
            }
        }
        self.rows_left -= n as u64;
        Ok((n, &self.bytes))
    }
}

/// Converts one row of raw little-endian bytes and hands it to `push`.
pub(super) fn push_row_bytes(
    collector: &mut super::Collector,
    dtype: NpyDtype,
    bytes: &[u8],
    scratch16: &mut Vec<half::f16>,
    scratch32: &mut Vec<f32>,
    scratch64: &mut Vec<f64>,
) -> Result<(), &'static str> {
    match dtype {
        NpyDtype::F16 => {
            scratch16.clear();
            scratch16.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]])),
            );
            collector.push_f16(scratch16)
        }
        NpyDtype::F32 => {
            scratch32.clear();
            scratch32.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            collector.push_f32(scratch32)
        }
        NpyDtype::F64 => {
            scratch64.clear();
            scratch64.extend(
                bytes
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
            );
            collector.push_f64(scratch64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_numpy_writes() {
        let (d, be, f, s) =
            parse_header("{'descr': '<f2', 'fortran_order': False, 'shape': (3, 512), }").unwrap();
        assert_eq!((d, be, f, s), (NpyDtype::F16, false, false, vec![3, 512]));
        let (d, be, _, s) =
            parse_header("{'descr': '>f8', 'fortran_order': False, 'shape': (7,), }").unwrap();
        assert_eq!((d, be, s), (NpyDtype::F64, true, vec![7]));
        let (_, _, f, _) =
            parse_header("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }").unwrap();
        assert!(f);
        assert!(
            parse_header("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }").is_err()
        );
        assert!(parse_header("garbage").is_err());
        assert!(
            parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }").is_err()
        );
    }
}
