//! Published web services. Definitions are read on every consumption (through the app's
//! cache); the service's content (the snapshot copy of an R or Python service, the model of a
//! realtime service) is content by digest (`contents.rs`), read only when the service is
//! loaded.

use o16n_types::{
    Content, DedicatedPoolSize, ParameterDefinition, Service, ServiceName, ServiceVersion, Username,
};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::on_unique_violation;
use crate::{Store, StoreError};

const COLUMNS: &str = "s.name, s.version, s.owner, s.runtime, s.created_at_micros, s.revision, s.description, \
                       s.operation_id, s.code, s.init_code, s.inputs, s.outputs, s.output_file_names, \
                       s.snapshot_id, s.content_digest, c.size AS content_size, s.pool_initial_size, s.pool_max_size, \
                       s.environment, s.environment_lock";

/// The services with the size of their content.
const FROM: &str = "services s LEFT JOIN contents c ON c.digest = s.content_digest";

fn encode_parameters(parameters: &[ParameterDefinition]) -> String {
    Value::Array(
        parameters
            .iter()
            .map(|parameter| json!({"name": parameter.name, "type": parameter.kind.as_str()}))
            .collect(),
    )
    .to_string()
}

fn decode_parameters(text: &str) -> Result<Vec<ParameterDefinition>, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("service parameters: {what}"));
    let values: Vec<Value> = serde_json::from_str(text).map_err(|err| corrupt(err.to_string()))?;
    values
        .into_iter()
        .map(|value| {
            let name = value["name"]
                .as_str()
                .ok_or_else(|| corrupt("no name".to_owned()))?;
            let kind = value["type"]
                .as_str()
                .ok_or_else(|| corrupt("no type".to_owned()))?;
            Ok(ParameterDefinition {
                name: name.to_owned(),
                kind: kind.parse().map_err(|err| corrupt(format!("{err}")))?,
            })
        })
        .collect()
}

fn service_from_row(row: &AnyRow) -> Result<Service, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("service: {what}"));
    let name: String = row.try_get("name")?;
    let version: String = row.try_get("version")?;
    let runtime: String = row.try_get("runtime")?;
    let inputs: String = row.try_get("inputs")?;
    let outputs: String = row.try_get("outputs")?;
    let files: String = row.try_get("output_file_names")?;
    Ok(Service {
        name: ServiceName::parse(&name).map_err(|err| corrupt(err.to_string()))?,
        version: ServiceVersion::parse(&version).map_err(|err| corrupt(err.to_string()))?,
        owner: Username::parse(&row.try_get::<String, _>("owner")?)
            .map_err(|err| corrupt(err.to_string()))?,
        runtime: runtime.parse().map_err(|err| corrupt(format!("{err}")))?,
        created_at_micros: row.try_get("created_at_micros")?,
        revision: row.try_get("revision")?,
        description: row.try_get("description")?,
        operation_id: row.try_get("operation_id")?,
        code: row.try_get("code")?,
        init_code: row.try_get("init_code")?,
        inputs: decode_parameters(&inputs)?,
        outputs: decode_parameters(&outputs)?,
        output_file_names: serde_json::from_str(&files).map_err(|err| corrupt(err.to_string()))?,
        snapshot_id: row.try_get("snapshot_id")?,
        content: match row.try_get::<Option<String>, _>("content_digest")? {
            Some(digest) => Some(Content {
                digest,
                size: row
                    .try_get::<Option<i64>, _>("content_size")?
                    .ok_or_else(|| corrupt("content without a size".to_owned()))?
                    as u64,
            }),
            None => None,
        },
        pool: match (
            row.try_get::<Option<i64>, _>("pool_initial_size")?,
            row.try_get::<Option<i64>, _>("pool_max_size")?,
        ) {
            (Some(initial), Some(max)) => Some(
                u32::try_from(initial)
                    .ok()
                    .zip(u32::try_from(max).ok())
                    .and_then(|(initial, max)| DedicatedPoolSize::new(initial, max).ok())
                    .ok_or_else(|| corrupt(format!("pool sizes {initial} and {max}")))?,
            ),
            _ => None,
        },
        environment: row.try_get("environment")?,
        environment_lock: row.try_get("environment_lock")?,
    })
}

impl Store {
    /// Publishes a service version whose content is stored already; [`StoreError::Conflict`]
    /// when the name and version exist.
    pub async fn insert_service(&self, service: &Service) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO services (name, version, owner, runtime, created_at_micros, revision, description, \
             operation_id, code, init_code, inputs, outputs, output_file_names, snapshot_id, content_digest, \
             environment, environment_lock) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(service.name.as_str())
        .bind(service.version.as_str())
        .bind(service.owner.as_str())
        .bind(service.runtime.as_str())
        .bind(service.created_at_micros)
        .bind(&service.revision)
        .bind(service.description.as_deref())
        .bind(service.operation_id.as_deref())
        .bind(&service.code)
        .bind(service.init_code.as_deref())
        .bind(encode_parameters(&service.inputs))
        .bind(encode_parameters(&service.outputs))
        .bind(Value::from(service.output_file_names.clone()).to_string())
        .bind(service.snapshot_id.as_deref())
        .bind(service.content.as_ref().map(|content| content.digest.as_str()))
        .bind(service.environment.as_deref())
        .bind(service.environment_lock.as_deref())
        .execute(&self.pool)
        .await
        .map_err(on_unique_violation("service version"))?;
        Ok(())
    }

    /// Replaces a service version's definition and content, forgetting content nothing refers
    /// to any longer. Returns whether it exists.
    pub async fn update_service(&self, service: &Service) -> Result<bool, StoreError> {
        let previous = self
            .find_service(&service.name, &service.version)
            .await?
            .and_then(|previous| previous.content);
        let result = sqlx::query(
            "UPDATE services SET revision = $1, description = $2, operation_id = $3, code = $4, init_code = $5, \
             inputs = $6, outputs = $7, output_file_names = $8, snapshot_id = $9, runtime = $10, \
             content_digest = $11, environment = $12, environment_lock = $13 \
             WHERE name = $14 AND version = $15",
        )
        .bind(&service.revision)
        .bind(service.description.as_deref())
        .bind(service.operation_id.as_deref())
        .bind(&service.code)
        .bind(service.init_code.as_deref())
        .bind(encode_parameters(&service.inputs))
        .bind(encode_parameters(&service.outputs))
        .bind(Value::from(service.output_file_names.clone()).to_string())
        .bind(service.snapshot_id.as_deref())
        .bind(service.runtime.as_str())
        .bind(service.content.as_ref().map(|content| content.digest.as_str()))
        .bind(service.environment.as_deref())
        .bind(service.environment_lock.as_deref())
        .bind(service.name.as_str())
        .bind(service.version.as_str())
        .execute(&self.pool)
        .await?;
        if previous.is_some() && previous.as_ref() != service.content.as_ref() {
            self.collect_unreferenced_content().await?;
        }
        Ok(result.rows_affected() > 0)
    }

    /// One service version.
    pub async fn find_service(
        &self,
        name: &ServiceName,
        version: &ServiceVersion,
    ) -> Result<Option<Service>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE s.name = $1 AND s.version = $2"
        )))
        .bind(name.as_str())
        .bind(version.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(service_from_row).transpose()
    }

    /// Every service version, by name, oldest version first.
    pub async fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {FROM} ORDER BY s.name, s.created_at_micros, s.version"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(service_from_row).collect()
    }

    /// The versions of one name, oldest first.
    pub async fn list_service_versions(
        &self,
        name: &ServiceName,
    ) -> Result<Vec<Service>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE s.name = $1 ORDER BY s.created_at_micros, s.version"
        )))
        .bind(name.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(service_from_row).collect()
    }

    /// Gives a service version a dedicated pool of `size`, or takes it away (`None`). Returns
    /// whether the service exists.
    pub async fn set_service_pool(
        &self,
        name: &ServiceName,
        version: &ServiceVersion,
        size: Option<DedicatedPoolSize>,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE services SET pool_initial_size = $1, pool_max_size = $2 WHERE name = $3 AND version = $4",
        )
        .bind(size.map(|size| i64::from(size.initial())))
        .bind(size.map(|size| i64::from(size.max())))
        .bind(name.as_str())
        .bind(version.as_str())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Every service version that has a dedicated pool: what every compute node should hold.
    pub async fn list_service_pools(&self) -> Result<Vec<Service>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE s.pool_max_size IS NOT NULL ORDER BY s.name, s.version"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(service_from_row).collect()
    }

    /// Deletes a service version. Returns whether it existed.
    pub async fn delete_service(
        &self,
        name: &ServiceName,
        version: &ServiceVersion,
    ) -> Result<bool, StoreError> {
        let content = self
            .find_service(name, version)
            .await?
            .and_then(|service| service.content);
        let result = sqlx::query("DELETE FROM services WHERE name = $1 AND version = $2")
            .bind(name.as_str())
            .bind(version.as_str())
            .execute(&self.pool)
            .await?;
        if content.is_some() {
            self.collect_unreferenced_content().await?;
        }
        Ok(result.rows_affected() > 0)
    }
}
