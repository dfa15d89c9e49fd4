//! Parsers for the four tabular datasets' published files: the churn CSV (header,
//! CRLF), MAGIC's magic04.data, StatLib's cal_housing.data and KEEL's .dat files.
//! Each returns raw, unscaled feature rows; preprocessing lives in `prep.rs`.

use std::path::Path;

use crate::error::{Error, Result};

/// Unscaled rows as parsed: `x` is row-major `rows x names.len()`.
#[derive(Debug, Clone)]
pub struct RawTable {
    pub names: Vec<String>,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

impl RawTable {
    pub fn rows(&self) -> usize {
        self.y.len()
    }
    pub fn features(&self) -> usize {
        self.names.len()
    }
}

fn parse_number(path: &Path, line: usize, column: &str, field: &str) -> Result<f64> {
    let v: f64 = field.trim().parse().map_err(|_| {
        Error::parse(path, line, format!("column {column}: expected a number, found {field:?}"))
    })?;
    if !v.is_finite() {
        return Err(Error::parse(path, line, format!("column {column}: {field:?} is not a finite number")));
    }
    Ok(v)
}

/// The churn CSV (`Churn_Modelling.csv`): drops RowNumber, CustomerId and Surname,
/// one-hot encodes Geography (France, Germany, Spain) and Gender (Female, Male):
/// 13 features, target `Exited`.
pub fn parse_churn(path: &Path, text: &str) -> Result<RawTable> {
    const NUMERIC: [&str; 8] = [
        "CreditScore", "Age", "Tenure", "Balance", "NumOfProducts", "HasCrCard", "IsActiveMember",
        "EstimatedSalary",
    ];
    const GEOGRAPHY: [&str; 3] = ["France", "Germany", "Spain"];
    const GENDER: [&str; 2] = ["Female", "Male"];

    // flexible: a row with a wrong field count gets our message, not csv's
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Error::parse(path, 1, format!("unreadable header row: {e}")))?
        .clone();
    let column = |name: &str| -> Result<usize> {
        headers.iter().position(|h| h.trim() == name).ok_or_else(|| {
            Error::parse(path, 1, format!("header has no column {name:?} (found: {})", headers.iter().collect::<Vec<_>>().join(", ")))
        })
    };
    let numeric_idx: Vec<usize> = NUMERIC.iter().map(|n| column(n)).collect::<Result<_>>()?;
    let geo_idx = column("Geography")?;
    let gender_idx = column("Gender")?;
    let target_idx = column("Exited")?;

    let mut names: Vec<String> = NUMERIC.iter().map(|s| s.to_string()).collect();
    names.extend(GEOGRAPHY.iter().map(|g| format!("Geography={g}")));
    names.extend(GENDER.iter().map(|g| format!("Gender={g}")));

    // the file's line a record starts on, from its byte offset: csv's record
    // and line counts both pass over the blank lines it skips
    let newlines: Vec<usize> = text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i).collect();
    let line_at = |p: Option<&csv::Position>| p.map_or(0, |p| newlines.partition_point(|&i| i <= p.byte() as usize) + 1);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| Error::parse(path, line_at(e.position()), format!("malformed CSV row: {e}")))?;
        let line = line_at(record.position());
        if record.len() != headers.len() {
            return Err(Error::parse(path, line, format!("expected {} fields, found {}", headers.len(), record.len())));
        }
        for (&i, name) in numeric_idx.iter().zip(NUMERIC) {
            x.push(parse_number(path, line, name, &record[i])?);
        }
        let one_hot = |idx: usize, column: &str, values: &[&str]| -> Result<Vec<f64>> {
            let v = record[idx].trim();
            let hit = values.iter().position(|c| *c == v).ok_or_else(|| {
                Error::parse(path, line, format!("column {column}: expected one of {values:?}, found {v:?}"))
            })?;
            Ok((0..values.len()).map(|k| if k == hit { 1.0 } else { 0.0 }).collect())
        };
        x.extend(one_hot(geo_idx, "Geography", &GEOGRAPHY)?);
        x.extend(one_hot(gender_idx, "Gender", &GENDER)?);
        let target = parse_number(path, line, "Exited", &record[target_idx])?;
        if target != 0.0 && target != 1.0 {
            return Err(Error::parse(path, line, format!("column Exited: expected 0 or 1, found {target}")));
        }
        y.push(target);
    }
    if y.is_empty() {
        return Err(Error::file(path, "no data rows after the header"));
    }
    Ok(RawTable { names, x, y })
}

/// Headerless comma-separated rows from `lines` (1-based line numbers), each with
/// `features` numeric fields and then a target parsed by `target`.
fn parse_rows<'a>(
    path: &Path,
    lines: impl Iterator<Item = (usize, &'a str)>,
    names: Vec<String>,
    target_name: &str,
    target: impl Fn(usize, &str) -> Result<f64>,
) -> Result<RawTable> {
    let features = names.len();
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (line, raw) in lines {
        let row = raw.trim_end_matches('\r');
        if row.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = row.split(',').collect();
        if fields.len() != features + 1 {
            return Err(Error::parse(
                path,
                line,
                format!("expected {} comma-separated fields ({} features and {target_name}), found {}", features + 1, features, fields.len()),
            ));
        }
        for (field, name) in fields[..features].iter().zip(&names) {
            x.push(parse_number(path, line, name, field)?);
        }
        y.push(target(line, fields[features].trim())?);
    }
    if y.is_empty() {
        return Err(Error::file(path, "no data rows"));
    }
    Ok(RawTable { names, x, y })
}

fn numbered(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l))
}

/// MAGIC gamma telescope (`magic04.data`): 10 features, class `g` = 0, `h` = 1.
pub fn parse_magic(path: &Path, text: &str) -> Result<RawTable> {
    let names = ["fLength", "fWidth", "fSize", "fConc", "fConc1", "fAsym", "fM3Long", "fM3Trans", "fAlpha", "fDist"]
        .map(String::from)
        .to_vec();
    parse_rows(path, numbered(text), names, "class", |line, v| match v {
        "g" => Ok(0.0),
        "h" => Ok(1.0),
        other => Err(Error::parse(path, line, format!("column class: expected g or h, found {other:?}"))),
    })
}

const CALIFORNIA_COLUMNS: [&str; 8] = [
    "longitude", "latitude", "housingMedianAge", "totalRooms", "totalBedrooms", "population",
    "households", "medianIncome",
];

fn numeric_target<'a>(path: &'a Path, name: &'static str) -> impl Fn(usize, &str) -> Result<f64> + 'a {
    move |line, v| parse_number(path, line, name, v)
}

/// StatLib's `cal_housing.data`: 8 features then medianHouseValue (USD).
pub fn parse_cal_housing(path: &Path, text: &str) -> Result<RawTable> {
    let names = CALIFORNIA_COLUMNS.map(String::from).to_vec();
    parse_rows(path, numbered(text), names, "medianHouseValue", numeric_target(path, "medianHouseValue"))
}

/// The data lines of a KEEL `.dat` file: everything after the `@data` line.
fn keel_data_lines<'a>(path: &Path, text: &'a str) -> Result<impl Iterator<Item = (usize, &'a str)>> {
    let data_line = numbered(text)
        .find(|(_, l)| l.trim_start().to_ascii_lowercase().starts_with("@data"))
        .map(|(n, _)| n)
        .ok_or_else(|| Error::file(path, "not a KEEL .dat file: no line starting with @data"))?;
    Ok(numbered(text).skip(data_line))
}

/// KEEL's `california.dat`: the same 8 features and target as StatLib's file.
pub fn parse_keel_california(path: &Path, text: &str) -> Result<RawTable> {
    let names = CALIFORNIA_COLUMNS.map(String::from).to_vec();
    parse_rows(path, keel_data_lines(path, text)?, names, "MedianHouseValue", numeric_target(path, "MedianHouseValue"))
}

/// KEEL's `mv.dat`: X1..X10 then Y.
pub fn parse_keel_mv(path: &Path, text: &str) -> Result<RawTable> {
    let names = (1..=10).map(|i| format!("X{i}")).collect();
    parse_rows(path, keel_data_lines(path, text)?, names, "Y", numeric_target(path, "Y"))
}
