//! NumPy `.npy` (format version 1.0) for float32 matrices: a tiny, fixed format,
//! so no crate is needed. `numpy.load` reads what this writes.

use std::io::{Read, Write};

pub fn write_npy_f32(
    w: &mut dyn Write,
    rows: usize,
    cols: usize,
    data: &[f32],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        data.len() == rows * cols,
        "matrix data does not match its shape"
    );
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    for x in data {
        w.write_all(&x.to_le_bytes())?;
    }
    Ok(())
}

/// Reads a 2-D little-endian float32 `.npy` written by [`write_npy_f32`] or numpy.
pub fn read_npy_f32(r: &mut dyn Read) -> anyhow::Result<(usize, usize, Vec<f32>)> {
    let mut magic = [0u8; 10];
    r.read_exact(&mut magic)?;
    anyhow::ensure!(&magic[..6] == b"\x93NUMPY", "not a .npy file");
    anyhow::ensure!(magic[6] == 1, "only .npy format version 1 is read");
    let len = u16::from_le_bytes([magic[8], magic[9]]) as usize;
    let mut header = vec![0u8; len];
    r.read_exact(&mut header)?;
    let header = String::from_utf8(header)?;
    anyhow::ensure!(header.contains("'<f4'"), "expected float32 data: {header}");
    anyhow::ensure!(
        header.contains("'fortran_order': False"),
        "expected C order"
    );
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| anyhow::anyhow!("no shape in header"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(dims.len() == 2, "expected a 2-D array, got shape ({shape})");
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)?;
    anyhow::ensure!(
        bytes.len() == dims[0] * dims[1] * 4,
        "data length does not match the shape"
    );
    let data = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((dims[0], dims[1], data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_aligned_header() {
        let mut buf = Vec::new();
        write_npy_f32(&mut buf, 2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]).unwrap();
        assert_eq!((buf.len() - 24) % 64, 0, "header padded to 64 bytes");
        let (r, c, d) = read_npy_f32(&mut buf.as_slice()).unwrap();
        assert_eq!((r, c), (2, 3));
        assert_eq!(d, vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5]);
        let mut empty = Vec::new();
        write_npy_f32(&mut empty, 0, 784, &[]).unwrap();
        assert_eq!(read_npy_f32(&mut empty.as_slice()).unwrap().0, 0);
    }
}
