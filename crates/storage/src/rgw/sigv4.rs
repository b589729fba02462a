//! AWS Signature Version 4 for S3 requests (the `Authorization` header form).
//!
//! Pure: the caller gives the method, the encoded path, the query pairs, the
//! headers it will send (at least `host`, `x-amz-date` and
//! `x-amz-content-sha256`) and the payload hash; [`authorization`] returns
//! the header value. Checked against the examples of AWS's S3 API reference
//! ("Examples: Signature Calculations", access key `AKIAIOSFODNN7EXAMPLE`).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The region RGW expects by default (its zonegroup's api name is empty).
pub const REGION: &str = "us-east-1";
/// The service name in the credential scope.
pub const SERVICE: &str = "s3";
/// `x-amz-content-sha256` of an empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What is signed.
#[derive(Debug, Clone, Copy)]
pub struct Signable<'a> {
    /// `GET`, `PUT`, …
    pub method: &'a str,
    /// The path, URI-encoded once ([`uri_encode`] with `encode_slash = false`).
    pub canonical_uri: &'a str,
    /// Query parameters, not encoded (`("lifecycle", "")` for `?lifecycle`).
    pub query: &'a [(String, String)],
    /// Every header to sign, names in any case.
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    pub payload_hash: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, the `x-amz-date` header.
    pub amz_date: &'a str,
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// S3's URI encoding: every byte but `A-Z a-z 0-9 - _ . ~` as `%XY`
/// (upper-case hex); `/` is kept unless `encode_slash`.
pub fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash);
        match keep {
            true => out.push(b as char),
            false => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The query string as signed: pairs encoded, sorted, `k=v` joined by `&`.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `(canonical headers, signed header names)`: lower-case names, sorted,
/// values trimmed with inner runs of spaces collapsed.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut hs: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            let value = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (n.to_ascii_lowercase(), value)
        })
        .collect();
    hs.sort();
    let canonical = hs.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed = hs
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (canonical, signed)
}

/// The canonical request and the signed header names.
pub fn canonical_request(s: &Signable<'_>) -> (String, String) {
    let (headers, signed) = canonical_headers(s.headers);
    let request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        s.method,
        s.canonical_uri,
        canonical_query(s.query),
        headers,
        signed,
        s.payload_hash
    );
    (request, signed)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The hex signature of `string_to_sign` for the day `date` (`YYYYMMDD`).
pub fn signature(secret_key: &str, date: &str, string_to_sign: &str) -> String {
    let k_date = hmac(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, REGION.as_bytes());
    let k_service = hmac(&k_region, SERVICE.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

/// The `Authorization` header value for `s`, signed with the key pair.
pub fn authorization(access_key: &str, secret_key: &str, s: &Signable<'_>) -> String {
    let date = s.amz_date.get(..8).unwrap_or(s.amz_date);
    let scope = format!("{date}/{REGION}/{SERVICE}/aws4_request");
    let (request, signed) = canonical_request(s);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        s.amz_date,
        sha256_hex(request.as_bytes())
    );
    let sig = signature(secret_key, date, &string_to_sign);
    format!("{ALGORITHM} Credential={access_key}/{scope},SignedHeaders={signed},Signature={sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of AWS's "Signature Calculations for the Authorization
    // Header: Transferring Payload in a Single Chunk" (S3 API reference).
    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const HOST: &str = "examplebucket.s3.amazonaws.com";
    const DATE: &str = "20130524T000000Z";

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn sign(
        method: &str,
        uri: &str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
        hash: &str,
    ) -> String {
        let mut headers = pairs(&[
            ("Host", HOST),
            ("x-amz-date", DATE),
            ("x-amz-content-sha256", hash),
        ]);
        headers.extend(pairs(extra));
        let query = pairs(query);
        authorization(
            AK,
            SK,
            &Signable {
                method,
                canonical_uri: uri,
                query: &query,
                headers: &headers,
                payload_hash: hash,
                amz_date: DATE,
            },
        )
    }

    #[test]
    fn get_object_example() {
        let auth = sign(
            "GET",
            "/test.txt",
            &[],
            &[("Range", "bytes=0-9")],
            EMPTY_SHA256,
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn put_object_example() {
        let body_hash = sha256_hex(b"Welcome to Amazon S3.");
        assert_eq!(
            body_hash,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let uri = uri_encode("/test$file.text", false);
        assert_eq!(uri, "/test%24file.text");
        let extra = [
            ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ];
        let auth = sign("PUT", &uri, &[], &extra, &body_hash);
        assert!(
            auth.contains(
                "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
            ),
            "{auth}"
        );
        assert!(
            auth.ends_with(
                "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
            ),
            "{auth}"
        );
    }

    #[test]
    fn subresource_without_value_example() {
        let auth = sign("GET", "/", &[("lifecycle", "")], &[], EMPTY_SHA256);
        assert!(
            auth.ends_with(
                "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
            ),
            "{auth}"
        );
    }

    #[test]
    fn query_is_sorted_example() {
        let auth = sign(
            "GET",
            "/",
            &[("prefix", "J"), ("max-keys", "2")],
            &[],
            EMPTY_SHA256,
        );
        assert!(
            auth.ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{auth}"
        );
    }

    #[test]
    fn encoding_and_canonical_forms() {
        assert_eq!(
            uri_encode("/prj_a:photos/a b~", false),
            "/prj_a%3Aphotos/a%20b~"
        );
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(uri_encode("é", true), "%C3%A9");
        assert_eq!(
            canonical_query(&pairs(&[("b", "x y"), ("a", ""), ("policy", "")])),
            "a=&b=x%20y&policy="
        );
        let (h, signed) =
            canonical_headers(&pairs(&[("X-Amz-Date", "  d  "), ("Host", "h  a   b")]));
        assert_eq!(h, "host:h a b\nx-amz-date:d\n");
        assert_eq!(signed, "host;x-amz-date");
    }
}
