//! A safetensors weights file read with positioned reads rather than mapped.
//!
//! Loading through a memory map leaves every page of the file resident in the process while the
//! model is built, on top of the copies the model keeps: all-MiniLM-L6-v2 peaked at about 145 MiB
//! to end at 100. Read one tensor at a time, the peak is the model plus one tensor. The same
//! reads serve [`crate::bert_model`]'s word-embedding table, which stays in the file and is read
//! a row at a time. No `unsafe`: a file truncated under a running model is an I/O error, not a
//! `SIGBUS`.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use crate::error::{Error, Result};

/// safetensors refuses headers larger than this.
const MAX_HEADER: u64 = 100_000_000;

/// One tensor's place in the file.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// `None` for a dtype candle cannot hold (reported when the tensor is loaded).
    pub dtype: Option<DType>,
    /// The safetensors name of the dtype, for errors.
    pub dtype_name: String,
    pub shape: Vec<usize>,
    /// Absolute offset of the first byte in the file.
    pub offset: u64,
    pub len: u64,
}

/// An open safetensors file: its header parsed, its tensors read on demand.
#[derive(Debug)]
pub(crate) struct WeightsFile {
    file: File,
    path: PathBuf,
    tensors: HashMap<String, Entry>,
}

impl WeightsFile {
    /// Opens `path` and reads its header (parsed and checked by the `safetensors` crate: offsets
    /// contiguous, each tensor's size that of its shape and dtype), then checks that the data it
    /// describes lies within the file.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read, [`Error::BadWeights`] if it is not a safetensors file.
    pub fn open(path: &Path) -> Result<Self> {
        let bad = |message: String| Error::BadWeights {
            path: path.to_path_buf(),
            message,
        };
        let mut file = File::open(path).map_err(Error::io(path))?;
        let file_len = file.metadata().map_err(Error::io(path))?.len();
        let mut len = [0u8; 8];
        file.read_exact(&mut len)
            .map_err(|e| bad(format!("no safetensors header: {e}")))?;
        let header_len = u64::from_le_bytes(len);
        if header_len > MAX_HEADER || 8 + header_len > file_len {
            return Err(bad(format!(
                "the header claims {header_len} bytes in a file of {file_len}"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(Error::io(path))?;
        let metadata: safetensors::tensor::Metadata = serde_json::from_slice(&header)
            .map_err(|e| bad(format!("the header is not a safetensors header: {e}")))?;
        let data_start = 8 + header_len;
        let tensors: HashMap<String, Entry> = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| {
                let (start, end) = info.data_offsets;
                let entry = Entry {
                    dtype: DType::try_from(info.dtype).ok(),
                    dtype_name: format!("{:?}", info.dtype),
                    shape: info.shape.clone(),
                    offset: data_start + start as u64,
                    len: (end - start) as u64,
                };
                (name, entry)
            })
            .collect();
        let data_end = tensors.values().map(|e| e.offset + e.len).max();
        if let Some(end) = data_end.filter(|&end| end > file_len) {
            return Err(bad(format!(
                "the tensors end at byte {end} of a file of {file_len}"
            )));
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            tensors,
        })
    }

    /// Where `name` is, if the file has it.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.tensors.get(name)
    }

    /// The file's path, for errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fills `buf` from `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        read_at(&self.file, buf, offset)
    }

    /// Reads tensor `name` onto `device`, as stored.
    pub fn load(&self, name: &str, device: &Device) -> candle_core::Result<Tensor> {
        let entry = self.entry(name).ok_or_else(|| {
            candle_core::Error::CannotFindTensor {
                path: name.to_owned(),
            }
            .bt()
        })?;
        let dtype = entry.dtype.ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "tensor {name} in {} is {}, which Outpost cannot load",
                self.path.display(),
                entry.dtype_name
            ))
        })?;
        let mut bytes = vec![0u8; entry.len as usize];
        self.read_at(&mut bytes, entry.offset).map_err(|e| {
            candle_core::Error::Msg(format!("reading {name} from {}: {e}", self.path.display()))
        })?;
        Tensor::from_raw_buffer(&bytes, dtype, &entry.shape, &Device::Cpu)?.to_device(device)
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// A [`WeightsFile`] as a candle `VarBuilder` backend, shared with the model that keeps reading
/// from it.
pub(crate) struct Backend(pub Arc<WeightsFile>);

impl SimpleBackend for Backend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.0.load(name, dev)?.to_dtype(dtype)?;
        if tensor.shape() != &s {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: tensor.shape().clone(),
            }
            .bt());
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.load(name, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.tensors.contains_key(name)
    }
}
