//! A directory laid out as the kubelet writes a Secret or ConfigMap volume (its
//! AtomicWriter), and changed the same way:
//!
//! ```text
//! ..2026_12_07_10_00_01.1/{tls.crt,tls.key}
//! ..data -> ..2026_12_07_10_00_01.1
//! tls.crt -> ..data/tls.crt
//! ```
//!
//! A change writes a new timestamped directory beside the old, points `..data_tmp` at it,
//! renames that over `..data` (the one atomic step), then removes the old directory.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

pub struct Volume {
    dir: PathBuf,
    generation: u32,
}

impl Volume {
    /// Writes `files` (name, content) as the volume's first payload.
    pub fn new(dir: &Path, files: &[(&str, Vec<u8>)]) -> Volume {
        let mut volume = Volume {
            dir: dir.to_path_buf(),
            generation: 0,
        };
        let payload = volume.payload(files);
        symlink(&payload, dir.join("..data")).unwrap();
        for (name, _) in files {
            symlink(Path::new("..data").join(name), dir.join(name)).unwrap();
        }
        volume
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn payload(&mut self, files: &[(&str, Vec<u8>)]) -> String {
        self.generation += 1;
        let name = format!(
            "..2026_12_07_10_{:02}_{:02}.{}",
            self.generation / 60,
            self.generation % 60,
            self.generation
        );
        let dir = self.dir.join(&name);
        fs::create_dir(&dir).unwrap();
        for (file, content) in files {
            fs::write(dir.join(file), content).unwrap();
        }
        name
    }

    /// Replaces the payload with `files` (the same names as before).
    pub fn swap(&mut self, files: &[(&str, Vec<u8>)]) {
        let old = fs::read_link(self.dir.join("..data")).unwrap();
        let payload = self.payload(files);
        let tmp = self.dir.join("..data_tmp");
        symlink(&payload, &tmp).unwrap();
        fs::rename(&tmp, self.dir.join("..data")).unwrap();
        fs::remove_dir_all(self.dir.join(old)).unwrap();
    }
}
