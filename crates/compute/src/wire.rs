//! How the domain's own types are spelled on the wire (`o16n-types` stays free of serde): the
//! reference's spellings of runtimes and parameter types, and bytes as base64.

/// A runtime as `R` or `Python`.
pub(crate) mod runtime {
    use o16n_types::RuntimeType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        runtime: &RuntimeType,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(runtime.as_str())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<RuntimeType, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A parameter type as the reference names it (`numeric`, `data.frame`, ...).
pub(crate) mod parameter_type {
    use o16n_types::ParameterType;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        kind: &ParameterType,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(kind.as_str())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<ParameterType, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Bytes as a base64 string.
pub(crate) mod bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Optional bytes as a base64 string or null.
pub(crate) mod optional_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => serializer.serialize_str(&STANDARD.encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| STANDARD.decode(text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use o16n_types::{ParameterType, RuntimeType};
    use serde_json::json;

    use crate::{ConsumeRequest, OutputFile, Priority, ServiceSpec, TypedValue};

    #[test]
    fn a_consume_request_round_trips_in_the_reference_spellings() {
        let request = ConsumeRequest {
            service: ServiceSpec {
                key: "k1".to_owned(),
                owner: "alice".to_owned(),
                runtime: RuntimeType::Python,
                code: "y = x".to_owned(),
                init_code: None,
                outputs: vec![crate::TypedName {
                    name: "y".to_owned(),
                    kind: ParameterType::DataFrame,
                }],
                output_file_names: vec![],
                content: None,
                pool: Some(crate::DedicatedPoolSpec {
                    service: "svc/v1".to_owned(),
                    initial_size: 2,
                    max_size: 4,
                }),
                environment: Some(crate::EnvironmentRef {
                    name: "lightgbm".to_owned(),
                    runtime: RuntimeType::Python,
                    lock: "lightgbm==4.6.0".to_owned(),
                }),
            },
            inputs: vec![TypedValue {
                name: "x".to_owned(),
                kind: ParameterType::Numeric,
                value: json!(1.5),
            }],
            priority: Priority::Batch,
        };
        let text = serde_json::to_value(&request).unwrap();
        assert_eq!(text["service"]["runtime"], "Python");
        assert_eq!(text["service"]["outputs"][0]["type"], "data.frame");
        let back: ConsumeRequest = serde_json::from_value(text).unwrap();
        assert_eq!(back, request);
    }

    #[test]
    fn output_files_travel_as_base64_or_null() {
        let files = vec![
            OutputFile {
                name: "a.png".to_owned(),
                content: Some(vec![0, 255, 10]),
            },
            OutputFile {
                name: "b".to_owned(),
                content: None,
            },
        ];
        let text = serde_json::to_value(&files).unwrap();
        assert_eq!(text[0]["content"], "AP8K");
        assert!(text[1]["content"].is_null());
        let back: Vec<OutputFile> = serde_json::from_value(text).unwrap();
        assert_eq!(back, files);
    }
}
