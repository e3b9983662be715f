//! The remote-write wire messages, 1.0 (`prometheus.WriteRequest`) and 2.0
//! (`io.prometheus.write.v2.Request`), as prost messages derived by hand from the protos in
//! Prometheus's `prompb/` (the gogoproto options there only shape Go code, not the wire), and
//! the snappy block framing both versions use.
//!
//! Owns encoding and decoding only; it knows nothing of queues, storage or HTTP.

/// Remote Write 1.0 messages (`package prometheus`).
pub mod v1 {
    /// `prometheus.WriteRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        /// Series with their samples.
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        /// Metric metadata (sent on its own schedule).
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<MetricMetadata>,
    }

    /// `prometheus.TimeSeries`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// Labels, sorted by name.
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        /// Float samples in time order.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        /// Exemplars.
        #[prost(message, repeated, tag = "3")]
        pub exemplars: Vec<Exemplar>,
        /// Native histogram samples in time order.
        #[prost(message, repeated, tag = "4")]
        pub histograms: Vec<Histogram>,
    }

    /// `prometheus.Label`.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct Label {
        /// Name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Value.
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `prometheus.Sample`.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Sample {
        /// Value.
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    /// `prometheus.Exemplar`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        /// Exemplar labels.
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        /// Value.
        #[prost(double, tag = "2")]
        pub value: f64,
        /// Milliseconds since the epoch.
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// `prometheus.MetricMetadata`.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct MetricMetadata {
        /// `MetricType`: 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gaugehistogram,
        /// 5 summary, 6 info, 7 stateset.
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        /// Family name.
        #[prost(string, tag = "2")]
        pub metric_family_name: String,
        /// HELP.
        #[prost(string, tag = "4")]
        pub help: String,
        /// UNIT.
        #[prost(string, tag = "5")]
        pub unit: String,
    }

    /// `prometheus.Histogram` (shared field layout with 2.0's).
    pub type Histogram = super::Histogram;
}

/// Remote Write 2.0 messages (`package io.prometheus.write.v2`).
pub mod v2 {
    /// `io.prometheus.write.v2.Request`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        /// The symbols table: every string, referenced by index; index 0 is "".
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        /// Series.
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// `io.prometheus.write.v2.TimeSeries`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// Name/value symbol refs, in pairs, sorted by name.
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        /// Float samples.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        /// Native histogram samples.
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<super::Histogram>,
        /// Exemplars.
        #[prost(message, repeated, tag = "4")]
        pub exemplars: Vec<Exemplar>,
        /// Type, help and unit of the series' family.
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
    }

    /// `io.prometheus.write.v2.Exemplar`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        /// Label symbol refs.
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        /// Value.
        #[prost(double, tag = "2")]
        pub value: f64,
        /// Milliseconds.
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// `io.prometheus.write.v2.Sample`.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Sample {
        /// Value.
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
        /// Created (start) timestamp of a counter, 0 when unknown.
        #[prost(int64, tag = "3")]
        pub start_timestamp: i64,
    }

    /// `io.prometheus.write.v2.Metadata`.
    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct Metadata {
        /// `MetricType`: 0 unspecified, 1 counter, 2 gauge, 3 histogram, 4 gaugehistogram,
        /// 5 summary, 6 info, 7 stateset.
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        /// HELP symbol ref.
        #[prost(uint32, tag = "3")]
        pub help_ref: u32,
        /// UNIT symbol ref.
        #[prost(uint32, tag = "4")]
        pub unit_ref: u32,
    }
}

/// The native histogram message, laid out the same in 1.0 and 2.0.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// Observation count (integer histograms).
    #[prost(uint64, optional, tag = "1")]
    pub count_int: Option<u64>,
    /// Observation count (float histograms).
    #[prost(double, optional, tag = "2")]
    pub count_float: Option<f64>,
    /// Sum of observations.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Resolution.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// Width of the zero bucket.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// Zero-bucket count (integer).
    #[prost(uint64, optional, tag = "6")]
    pub zero_count_int: Option<u64>,
    /// Zero-bucket count (float).
    #[prost(double, optional, tag = "7")]
    pub zero_count_float: Option<f64>,
    /// Negative bucket spans.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Negative bucket deltas (integer).
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Negative bucket counts (float).
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// Positive bucket spans.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// Positive bucket deltas (integer).
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Positive bucket counts (float).
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// 0 unknown, 1 yes, 2 no, 3 gauge.
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Custom bucket bounds (schema -53).
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
    /// Created timestamp (2.0 only; 1.0 receivers ignore the unknown field).
    #[prost(int64, tag = "17")]
    pub start_timestamp: i64,
}

/// `BucketSpan`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct BucketSpan {
    /// Gap to the previous span (or the first index).
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Consecutive buckets.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// Which message a body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
pub enum Protocol {
    /// `prometheus.WriteRequest`.
    #[default]
    #[serde(rename = "prometheus.WriteRequest")]
    V1,
    /// `io.prometheus.write.v2.Request`.
    #[serde(rename = "io.prometheus.write.v2.Request")]
    V2,
}

impl Protocol {
    /// The `Content-Type` a sender puts on the request.
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::V1 => "application/x-protobuf",
            Protocol::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    /// The `X-Prometheus-Remote-Write-Version` header.
    pub fn version_header(self) -> &'static str {
        match self {
            Protocol::V1 => "0.1.0",
            Protocol::V2 => "2.0.0",
        }
    }

    /// The message a request's `Content-Type` names (`None`: not one we read). A bare
    /// `application/x-protobuf` is 1.0, as the spec says.
    pub fn from_content_type(ct: &str) -> Option<Protocol> {
        let mut parts = ct.split(';').map(str::trim);
        if !parts
            .next()
            .is_some_and(|m| m.eq_ignore_ascii_case("application/x-protobuf"))
        {
            return None;
        }
        let mut proto = Protocol::V1;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("proto") {
                    proto = match v.trim().trim_matches('"') {
                        "prometheus.WriteRequest" => Protocol::V1,
                        "io.prometheus.write.v2.Request" => Protocol::V2,
                        _ => return None,
                    };
                }
            }
        }
        Some(proto)
    }
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a snappy block.
    #[error("snappy: {0}")]
    Snappy(String),
    /// Larger than allowed once decompressed.
    #[error("decompressed size {0} exceeds the limit of {1} bytes")]
    TooLarge(usize, usize),
    /// Not the protobuf message.
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Snappy block-compresses `raw` (the framing both versions use).
pub fn compress(raw: &[u8]) -> Vec<u8> {
    // Compressing a byte slice into a buffer of the bound's size cannot fail.
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .unwrap_or_default()
}

/// Decompresses a snappy block, refusing one that would exceed `limit` bytes (checked from the
/// block's header before anything is allocated).
pub fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if len > limit {
        return Err(DecodeError::TooLarge(len, limit));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn v1_round_trips_through_snappy() {
        let req = v1::WriteRequest {
            timeseries: vec![v1::TimeSeries {
                labels: vec![v1::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![v1::Sample {
                    value: 1.0,
                    timestamp: 1000,
                }],
                ..Default::default()
            }],
            metadata: vec![],
        };
        let body = compress(&req.encode_to_vec());
        let raw = decompress(&body, 1 << 20).unwrap();
        assert_eq!(v1::WriteRequest::decode(raw.as_slice()).unwrap(), req);
        assert!(decompress(&body, 4).is_err(), "the size limit holds");
        assert!(decompress(b"garbage!", 1 << 20).is_err());
    }

    /// The field numbers and wire types against the bytes the protobuf encoding rules give for
    /// `timeseries { labels { name: "a" value: "b" } samples { value: 1 timestamp: 2 } }`:
    /// field 1 (len 21) holding field 1 (len 6: "a", "b") and field 2 (len 11: double 1.0,
    /// varint 2).
    #[test]
    fn v1_wire_bytes_match_protoc() {
        let req = v1::WriteRequest {
            timeseries: vec![v1::TimeSeries {
                labels: vec![v1::Label {
                    name: "a".into(),
                    value: "b".into(),
                }],
                samples: vec![v1::Sample {
                    value: 1.0,
                    timestamp: 2,
                }],
                ..Default::default()
            }],
            metadata: vec![],
        };
        let want: &[u8] = &[
            0x0a, 0x15, 0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', 0x12, 0x0b, 0x09, 0, 0, 0,
            0, 0, 0, 0xf0, 0x3f, 0x10, 0x02,
        ];
        assert_eq!(req.encode_to_vec(), want);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Protocol::from_content_type("application/x-protobuf"),
            Some(Protocol::V1)
        );
        assert_eq!(
            Protocol::from_content_type(Protocol::V2.content_type()),
            Some(Protocol::V2)
        );
        assert_eq!(
            Protocol::from_content_type("application/x-protobuf;proto=prometheus.WriteRequest"),
            Some(Protocol::V1)
        );
        assert_eq!(Protocol::from_content_type("application/json"), None);
        assert_eq!(
            Protocol::from_content_type("application/x-protobuf;proto=other.Msg"),
            None
        );
    }
}
