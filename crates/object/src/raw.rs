//! The two S3 requests `object_store` does not offer, signed with its own `SigV4`
//! [`AwsAuthorizer`]: completing a multipart upload only if the key is still free
//! (`If-None-Match: *`, which makes `--no-clobber` atomic for checkpoints of any size), and
//! listing the parts an upload already holds (which lets `--resume` skip the parts the
//! server proves it has).

use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpRequest, HttpRequestBody};
use serde::Deserialize;
use std::fmt::Write as _;
use std::time::Duration;

/// What went wrong with one of these requests.
#[derive(Debug)]
pub(crate) enum RawError {
    /// The precondition failed: an object exists under the key (`If-None-Match: *`), or
    /// the object is no longer the one named (`If-Match`).
    PreconditionFailed,
    /// The server answered with an error status.
    Status { status: u16, body: String },
    /// The request could not be built, signed or sent, or the answer not read.
    Transport(crate::error::Cause),
}

impl std::fmt::Display for RawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PreconditionFailed => write!(f, "the publishing precondition failed"),
            Self::Status { status, body } => write!(f, "HTTP {status}: {body}"),
            Self::Transport(cause) => write!(f, "{cause}"),
        }
    }
}

impl std::error::Error for RawError {}

/// When a multipart upload may publish.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Precondition<'a> {
    /// No object exists under the key (`If-None-Match: *`).
    Absent,
    /// The object under the key still has this entity tag (`If-Match`).
    Matches(&'a str),
}

impl<'a> Precondition<'a> {
    fn header(self) -> (&'static str, &'a str) {
        match self {
            Self::Absent => ("if-none-match", "*"),
            Self::Matches(e_tag) => ("if-match", e_tag),
        }
    }
}

/// One part the server holds for an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedPart {
    /// S3's part number (1-based).
    pub number: u32,
    /// The part's entity tag, quotes removed, lower case (the MD5 of its bytes on S3 and
    /// `SeaweedFS` without SSE-KMS).
    pub e_tag: String,
    /// The part's length.
    pub size: u64,
}

/// A signer and HTTP client for one bucket, path-style (`ENDPOINT/BUCKET/KEY`).
pub(crate) struct RawS3 {
    http: reqwest::Client,
    endpoint: String,
    bucket: String,
    credential: AwsCredential,
    region: String,
}

impl std::fmt::Debug for RawS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawS3")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Transient answers worth one more try (throttling and unavailability), with a backoff.
const RETRIES: u32 = 3;

impl RawS3 {
    pub(crate) fn new(
        endpoint: &str,
        bucket: &str,
        credential: AwsCredential,
        region: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, RawError> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .build()
            .map_err(|e| RawError::Transport(Box::new(e)))?;
        Ok(Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            bucket: bucket.to_owned(),
            credential,
            region: region.to_owned(),
        })
    }

    fn url(&self, key: &str, query: &str) -> String {
        format!("{}/{}/{}?{query}", self.endpoint, encode(&self.bucket, false), encode(key, false))
    }

    /// Sends a signed request, retrying throttling (429) and unavailability (503).
    async fn send(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&'static str, &str)],
        body: &str,
    ) -> Result<(u16, String), RawError> {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut builder = http::Request::builder().method(method.clone()).uri(url);
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            let mut request: HttpRequest = builder
                .body(HttpRequestBody::from(body.to_owned()))
                .map_err(|e| RawError::Transport(Box::new(e)))?;
            AwsAuthorizer::new(&self.credential, "s3", &self.region)
                .try_authorize(&mut request, None)
                .map_err(|e| RawError::Transport(Box::new(e)))?;
            let mut outgoing = self.http.request(method.clone(), url);
            for (name, value) in request.headers() {
                outgoing = outgoing.header(name, value);
            }
            let response = outgoing
                .body(body.to_owned())
                .send()
                .await
                .map_err(|e| RawError::Transport(Box::new(e)))?;
            let status = response.status().as_u16();
            let text = response.text().await.map_err(|e| RawError::Transport(Box::new(e)))?;
            if (status == 429 || status == 503) && attempt < RETRIES {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                continue;
            }
            return Ok((status, text));
        }
    }

    /// `CompleteMultipartUpload` under a precondition: the object appears only if
    /// `condition` holds; otherwise [`RawError::PreconditionFailed`] and the upload stays
    /// uncompleted (the caller aborts it). Returns the new object's entity tag.
    pub(crate) async fn complete_if(
        &self,
        key: &str,
        upload_id: &str,
        e_tags: &[String],
        condition: Precondition<'_>,
    ) -> Result<Option<String>, RawError> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for (number, e_tag) in (1u32..).zip(e_tags) {
            let _ = write!(
                body,
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                escape_xml(e_tag)
            );
        }
        body.push_str("</CompleteMultipartUpload>");
        let url = self.url(key, &format!("uploadId={}", encode(upload_id, true)));
        let (status, text) = self
            .send(
                http::Method::POST,
                &url,
                &[condition.header(), ("content-type", "application/xml")],
                &body,
            )
            .await?;
        // S3 may answer 200 and report the failure in the body.
        if status == 412 || text.contains("<Code>PreconditionFailed</Code>") {
            return Err(RawError::PreconditionFailed);
        }
        if !(200..300).contains(&status) || text.contains("<Error>") {
            return Err(RawError::Status { status, body: snippet(&text) });
        }
        Ok(element(&text, "ETag").map(|e| e.replace("&quot;", "\"")))
    }

    /// Every part the server holds for `upload_id` (`ListParts`, page by page).
    pub(crate) async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<ListedPart>, RawError> {
        let mut parts = Vec::new();
        let mut marker = 0u32;
        // Bounded: 10,000 parts at 1,000 per page.
        for _ in 0..=10 {
            // Only a real marker is sent: some servers read `part-number-marker=0` oddly.
            let query = if marker == 0 {
                format!("uploadId={}", encode(upload_id, true))
            } else {
                format!("part-number-marker={marker}&uploadId={}", encode(upload_id, true))
            };
            let url = self.url(key, &query);
            let (status, text) = self.send(http::Method::GET, &url, &[], "").await?;
            if !(200..300).contains(&status) {
                return Err(RawError::Status { status, body: snippet(&text) });
            }
            let page: ListPartsResult = quick_xml::de::from_str(&text).map_err(|e| {
                RawError::Transport(format!("unreadable ListParts answer: {e}").into())
            })?;
            for p in page.parts {
                let e_tag = p.e_tag.trim().trim_matches('"').to_ascii_lowercase();
                parts.push(ListedPart { number: p.part_number, e_tag, size: p.size });
            }
            match page.next_part_number_marker {
                Some(next) if page.is_truncated && next > marker => marker = next,
                _ => return Ok(parts),
            }
        }
        Err(RawError::Transport("ListParts did not end after 11 pages".into()))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListPartsResult {
    #[serde(default, rename = "Part")]
    parts: Vec<XmlPart>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_part_number_marker: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlPart {
    part_number: u32,
    #[serde(rename = "ETag")]
    e_tag: String,
    size: u64,
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and `/` between key
/// segments unless `slash` is set), as `SigV4`'s canonical URI expects.
fn encode(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (b == b'/' && !slash)
        {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The text of the first `<name>` element.
fn element<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let len = text.get(start..)?.find(&format!("</{name}>"))?;
    text.get(start..start + len)
}

/// The start of an error body, for messages.
fn snippet(text: &str) -> String {
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_for_sigv4() {
        assert_eq!(encode("a b/c+d~e", false), "a%20b/c%2Bd~e");
        assert_eq!(encode("x/y=", true), "x%2Fy%3D");
        assert_eq!(encode("é", false), "%C3%A9");
    }

    #[test]
    fn list_parts_answers_are_read() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>k</Key>
<UploadId>u</UploadId><PartNumberMarker>0</PartNumberMarker><NextPartNumberMarker>2</NextPartNumberMarker>
<MaxParts>1000</MaxParts><IsTruncated>false</IsTruncated>
<Part><PartNumber>1</PartNumber><LastModified>2026-01-01T00:00:00Z</LastModified><ETag>"AB12"</ETag><Size>5</Size></Part>
<Part><PartNumber>2</PartNumber><ETag>&quot;cd34&quot;</ETag><Size>7</Size></Part>
</ListPartsResult>"#;
        let page: ListPartsResult = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(page.parts.len(), 2);
        assert_eq!(page.parts[0].part_number, 1);
        assert_eq!(page.parts[1].e_tag, "\"cd34\"");
        assert_eq!(page.parts[1].size, 7);
        assert!(!page.is_truncated);
        let empty: ListPartsResult = quick_xml::de::from_str(
            "<ListPartsResult><IsTruncated>false</IsTruncated></ListPartsResult>",
        )
        .unwrap();
        assert!(empty.parts.is_empty());
    }

    #[test]
    fn elements_are_found_without_panicking() {
        assert_eq!(element("<a><ETag>x</ETag></a>", "ETag"), Some("x"));
        assert_eq!(element("<ETag>x", "ETag"), None);
        assert_eq!(element("", "ETag"), None);
    }
}
