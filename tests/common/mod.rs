//! Fixtures in the real file formats, written into a temporary data directory
//! laid out like ../shared/datasets.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn write(dir: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A small deterministic pseudo-random stream for fixture values.
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Churn_Modelling.csv with `rows` rows, CRLF line ends; the label is a learnable
/// function of Age and Balance so a model can beat the majority class.
pub fn churn_csv(rows: usize) -> String {
    let mut r = Lcg(42);
    let mut s = String::from("RowNumber,CustomerId,Surname,CreditScore,Geography,Gender,Age,Tenure,Balance,NumOfProducts,HasCrCard,IsActiveMember,EstimatedSalary,Exited\r\n");
    for i in 0..rows {
        let age = 18.0 + (r.next() * 60.0).floor();
        let balance = (r.next() * 200000.0 * 100.0).round() / 100.0;
        let geo = ["France", "Germany", "Spain"][(r.next() * 3.0) as usize];
        let gender = ["Female", "Male"][(r.next() * 2.0) as usize];
        let exited = if age > 50.0 || (geo == "Germany" && balance > 120000.0) { 1 } else { 0 };
        s.push_str(&format!(
            "{},{},Name{},{},{},{},{},{},{},{},{},{},{:.2},{}\r\n",
            i + 1,
            15600000 + i,
            i,
            350 + (r.next() * 500.0) as u32,
            geo,
            gender,
            age,
            (r.next() * 10.0) as u32,
            balance,
            1 + (r.next() * 3.0) as u32,
            (r.next() * 2.0) as u32,
            (r.next() * 2.0) as u32,
            r.next() * 200000.0,
            exited
        ));
    }
    s
}

pub fn magic_data(rows: usize) -> String {
    let mut r = Lcg(7);
    let mut s = String::new();
    for _ in 0..rows {
        let f: Vec<f64> = (0..10).map(|_| r.next() * 100.0).collect();
        let class = if f[0] + f[1] > 100.0 { "h" } else { "g" };
        s.push_str(&f.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(","));
        s.push_str(&format!(",{class}\n"));
    }
    s
}

pub fn cal_housing_data(rows: usize) -> String {
    let mut r = Lcg(9);
    let mut s = String::new();
    for _ in 0..rows {
        let income = 0.5 + r.next() * 14.5;
        let value = (income * 30000.0 + r.next() * 50000.0).min(500001.0);
        s.push_str(&format!(
            "{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6}\n",
            -124.0 + r.next() * 10.0,
            32.0 + r.next() * 10.0,
            1.0 + (r.next() * 51.0).floor(),
            2.0 + (r.next() * 5000.0).floor(),
            1.0 + (r.next() * 1000.0).floor(),
            3.0 + (r.next() * 3000.0).floor(),
            1.0 + (r.next() * 1000.0).floor(),
            income,
            value
        ));
    }
    s
}

pub fn keel_california(rows: usize) -> String {
    let mut s = String::from("@relation california\r\n");
    for a in ["Longitude", "Latitude", "HousingMedianAge", "TotalRooms", "TotalBedrooms", "Population", "Households", "MedianIncome", "MedianHouseValue"] {
        s.push_str(&format!("@attribute {a} real[0,1]\r\n"));
    }
    s.push_str("@inputs Longitude, Latitude, HousingMedianAge, TotalRooms, TotalBedrooms, Population, Households, MedianIncome\r\n@outputs MedianHouseValue\r\n@data\r\n");
    for line in cal_housing_data(rows).lines() {
        s.push_str(line);
        s.push_str("\r\n");
    }
    s
}

pub fn keel_mv(rows: usize) -> String {
    let mut r = Lcg(11);
    let mut s = String::from("@relation mv\r\n");
    for i in 1..=10 {
        s.push_str(&format!("@attribute X{i} real [0.0, 1.0]\r\n"));
    }
    s.push_str("@attribute Y real [-50.0, 5.0]\r\n@inputs X1, X2, X3, X4, X5, X6, X7, X8, X9, X10\r\n@outputs Y\r\n@data\r\n");
    for _ in 0..rows {
        let x: Vec<f64> = (0..10).map(|_| r.next() * 10.0 - 5.0).collect();
        let y = x[0] * 2.0 - x[1] + x[2] * x[3] * 0.5;
        s.push_str(&x.iter().map(|v| format!("{v:.5}")).collect::<Vec<_>>().join(","));
        s.push_str(&format!(",{y:.5}\r\n"));
    }
    s
}

/// A data directory with all four tabular datasets (churn gzipped, the rest plain).
pub fn tabular_dir(rows: usize) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "churn/Churn_Modelling.csv.gz", &gzip(churn_csv(rows).as_bytes()));
    write(d.path(), "magic/magic04.data", magic_data(rows).as_bytes());
    write(d.path(), "california/california.dat", keel_california(rows).as_bytes());
    write(d.path(), "mv/mv.dat.gz", &gzip(keel_mv(rows).as_bytes()));
    d
}
