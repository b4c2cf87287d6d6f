//! How the shards order text, and the same order in the proxy.
//!
//! A k-way merge of sorted shard streams, or a sort of merged groups, must
//! compare text exactly as the shards do. Byte order is right only for the
//! C and POSIX collations. For an ICU collation the proxy loads the system's
//! ICU library (`dlopen`, no build-time link: the proxy runs without ICU
//! when no shard needs it) and uses it only when its collator version equals
//! the one Postgres recorded for the collation (`pg_collation.collversion` /
//! `pg_database.datcollversion`): the same ICU rules give the same order.
//! Anything else (a libc locale other than C/POSIX, a version mismatch, no
//! ICU here, a nondeterministic collation) is refused by the caller, never
//! guessed. The shard reports each key's collation through a probe query
//! (see `planner::distributed`); [`describe`] parses what it sends.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::sync::{Arc, Mutex, OnceLock};

use super::compare::TextOrder;

/// What the probe reports about one collation (or the database default):
/// `provider,collcollate,iculocale,deterministic,version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollationInfo {
    /// 'c' libc, 'i' ICU, 'd' the database default.
    pub provider: char,
    pub collate: String,
    pub icu_locale: String,
    pub deterministic: bool,
    pub version: String,
}

/// Parses one probe descriptor (see [`CollationInfo`]).
pub fn describe(s: &str) -> Option<CollationInfo> {
    let mut f = s.splitn(5, ',');
    let provider = f.next()?.chars().next()?;
    let collate = f.next()?.to_string();
    let icu_locale = f.next()?.to_string();
    let deterministic = matches!(f.next()?, "t" | "true");
    let version = f.next().unwrap_or("").to_string();
    Some(CollationInfo {
        provider,
        collate,
        icu_locale,
        deterministic,
        version,
    })
}

/// The text order for a collation, given the database default for
/// "default"; Err names why the proxy cannot order by it.
pub fn text_order(coll: &CollationInfo, db: &CollationInfo) -> Result<TextOrder, String> {
    let c = if coll.provider == 'd' { db } else { coll };
    if !c.deterministic {
        return Err("a nondeterministic collation".into());
    }
    match c.provider {
        'c' if matches!(c.collate.as_str(), "C" | "POSIX") => Ok(TextOrder::Bytes),
        'c' => Err(format!(
            "the libc collation \"{}\" (the proxy orders text only by C/POSIX or ICU collations)",
            c.collate
        )),
        'i' => IcuCollator::open(&c.icu_locale, &c.version).map(TextOrder::Icu),
        p => Err(format!("a collation of provider '{p}'")),
    }
}

type UErrorCode = i32;
type OpenFn = unsafe extern "C" fn(*const c_char, *mut UErrorCode) -> *mut c_void;
type CloseFn = unsafe extern "C" fn(*mut c_void);
type StrcollFn = unsafe extern "C" fn(
    *const c_void,
    *const c_char,
    i32,
    *const c_char,
    i32,
    *mut UErrorCode,
) -> i32;
type GetVersionFn = unsafe extern "C" fn(*const c_void, *mut u8);
type VersionToStringFn = unsafe extern "C" fn(*const u8, *mut c_char);

/// The ICU entry points (resolved once per process).
struct Icu {
    open: OpenFn,
    close: CloseFn,
    strcoll: StrcollFn,
    get_version: GetVersionFn,
    version_to_string: VersionToStringFn,
}

fn icu() -> Option<&'static Icu> {
    static ICU: OnceLock<Option<Icu>> = OnceLock::new();
    ICU.get_or_init(load).as_ref()
}

/// dlopen libicui18n/libicuuc of some version and resolve the versioned
/// symbols (`ucol_open_72`, …).
fn load() -> Option<Icu> {
    for major in (50..=99).rev() {
        let (Ok(i18n), Ok(uc)) = (
            CString::new(format!("libicui18n.so.{major}")),
            CString::new(format!("libicuuc.so.{major}")),
        ) else {
            continue;
        };
        // SAFETY: dlopen/dlsym with NUL-terminated names; the libraries stay
        // loaded for the life of the process (never dlclosed), so the
        // function pointers stay valid.
        unsafe {
            let hi = libc::dlopen(i18n.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if hi.is_null() {
                continue;
            }
            let hu = libc::dlopen(uc.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if hu.is_null() {
                continue;
            }
            let sym = |h: *mut c_void, name: &str| -> Option<*mut c_void> {
                let n = CString::new(format!("{name}_{major}")).ok()?;
                let p = libc::dlsym(h, n.as_ptr());
                (!p.is_null()).then_some(p)
            };
            let (Some(open), Some(close), Some(strcoll), Some(get_version), Some(vts)) = (
                sym(hi, "ucol_open"),
                sym(hi, "ucol_close"),
                sym(hi, "ucol_strcollUTF8"),
                sym(hi, "ucol_getVersion"),
                sym(hu, "u_versionToString"),
            ) else {
                continue;
            };
            return Some(Icu {
                open: std::mem::transmute::<*mut c_void, OpenFn>(open),
                close: std::mem::transmute::<*mut c_void, CloseFn>(close),
                strcoll: std::mem::transmute::<*mut c_void, StrcollFn>(strcoll),
                get_version: std::mem::transmute::<*mut c_void, GetVersionFn>(get_version),
                version_to_string: std::mem::transmute::<*mut c_void, VersionToStringFn>(vts),
            });
        }
    }
    None
}

/// An ICU collator for one locale, as Postgres opens it (`ucol_open`).
pub struct IcuCollator {
    icu: &'static Icu,
    coll: *mut c_void,
    locale: String,
}

// SAFETY: ICU collators may be used for comparisons from several threads at
// once (ICU's thread-safety rules: a UCollator is safe for concurrent
// read-only use); the proxy never modifies one after opening it.
unsafe impl Send for IcuCollator {}
unsafe impl Sync for IcuCollator {}

impl std::fmt::Debug for IcuCollator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IcuCollator({})", self.locale)
    }
}

impl Drop for IcuCollator {
    fn drop(&mut self) {
        // SAFETY: `coll` came from ucol_open and is closed once.
        unsafe { (self.icu.close)(self.coll) }
    }
}

impl IcuCollator {
    /// The collator for `locale` when this process's ICU has collator
    /// version `version` (what Postgres recorded); shared per locale.
    pub fn open(locale: &str, version: &str) -> Result<Arc<IcuCollator>, String> {
        static OPEN: OnceLock<Mutex<HashMap<String, Arc<IcuCollator>>>> = OnceLock::new();
        let cache = OPEN.get_or_init(Default::default);
        let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
        let c = match map.get(locale) {
            Some(c) => c.clone(),
            None => {
                let icu = icu().ok_or_else(|| {
                    format!("the ICU collation \"{locale}\" (no ICU library in the proxy's environment)")
                })?;
                let name =
                    CString::new(locale).map_err(|_| "an ICU locale with a NUL".to_string())?;
                let mut status: UErrorCode = 0;
                // SAFETY: a NUL-terminated locale name and a status out-parameter.
                let coll = unsafe { (icu.open)(name.as_ptr(), &mut status) };
                if coll.is_null() || status > 0 {
                    return Err(format!(
                        "the ICU collation \"{locale}\" (ICU cannot open it here)"
                    ));
                }
                let c = Arc::new(IcuCollator {
                    icu,
                    coll,
                    locale: locale.to_string(),
                });
                map.insert(locale.to_string(), c.clone());
                c
            }
        };
        let mine = c.version();
        if mine != version {
            return Err(format!(
                "the ICU collation \"{locale}\" (the shards' collator version is {version}, the proxy's ICU has {mine})"
            ));
        }
        Ok(c)
    }

    pub fn locale(&self) -> &str {
        &self.locale
    }

    /// The collator version as Postgres prints it ("153.120").
    pub fn version(&self) -> String {
        let mut v = [0u8; 4];
        let mut s = [0 as c_char; 24];
        // SAFETY: ucol_getVersion writes 4 bytes; u_versionToString writes
        // at most U_MAX_VERSION_STRING_LENGTH (20) bytes plus a NUL.
        unsafe {
            (self.icu.get_version)(self.coll, v.as_mut_ptr());
            (self.icu.version_to_string)(v.as_ptr(), s.as_mut_ptr());
        }
        let bytes: Vec<u8> = s
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The collation order of two UTF-8 strings (without the byte tie-break).
    pub fn compare(&self, a: &[u8], b: &[u8]) -> Ordering {
        let mut status: UErrorCode = 0;
        let (la, lb) = (
            i32::try_from(a.len()).unwrap_or(i32::MAX),
            i32::try_from(b.len()).unwrap_or(i32::MAX),
        );
        // SAFETY: pointers and lengths of live byte slices.
        let r = unsafe {
            (self.icu.strcoll)(
                self.coll,
                a.as_ptr() as *const c_char,
                la,
                b.as_ptr() as *const c_char,
                lb,
                &mut status,
            )
        };
        r.cmp(&0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_probe_descriptors() {
        let c = describe("i,,en-US,t,153.120").unwrap();
        assert_eq!(c.provider, 'i');
        assert_eq!(c.icu_locale, "en-US");
        assert!(c.deterministic);
        assert_eq!(c.version, "153.120");
        let db = describe("c,C,,t,").unwrap();
        let d = describe("d,,,t,").unwrap();
        assert!(matches!(text_order(&d, &db), Ok(TextOrder::Bytes)));
        let libc = describe("c,en_US.UTF-8,,t,2.36").unwrap();
        assert!(text_order(&libc, &db).unwrap_err().contains("libc"));
        let nd = describe("i,,und-u-ks-level2,f,153.120").unwrap();
        assert!(text_order(&nd, &db).is_err());
    }

    #[test]
    fn icu_orders_like_a_collation_when_present() {
        // The machine's ICU, when it has one (Postgres's packages need it).
        let Some(icu) = icu() else { return };
        let _ = icu;
        let probe = IcuCollator::open("en-US", "0").unwrap_err();
        assert!(probe.contains("collator version"), "{probe}");
        let version = probe
            .split("the proxy's ICU has ")
            .nth(1)
            .unwrap()
            .trim_end_matches(')')
            .to_string();
        let c = IcuCollator::open("en-US", &version).unwrap();
        assert_eq!(c.compare(b"a", b"B"), Ordering::Less);
        assert_eq!(c.compare(b"b", b"A"), Ordering::Greater);
        assert_eq!(c.compare("é".as_bytes(), b"f"), Ordering::Less);
        assert_eq!(b"a".as_slice().cmp(b"B".as_slice()), Ordering::Greater);
    }
}
