//! The queue in Amazon SQS (or an SQS-compatible endpoint), through aws-sdk-sqs: long polling,
//! visibility extended while an item takes long, and the queue's redrive policy moving a message
//! received `max_receives` times to its dead-letter queue.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};

use super::{Delivery, QueueError, Receipt, WorkItem};

/// The queue and how to use it (`[queue]` of `kind = "sqs"`, explained there).
#[derive(Debug, Clone, PartialEq)]
pub struct SqsSettings {
    pub url: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub visibility_timeout: Duration,
    pub wait_time: Duration,
    pub batch_size: u32,
    pub max_receives: u32,
}

#[derive(Debug)]
pub struct SqsQueue {
    client: Client,
    settings: SqsSettings,
}

const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

fn remote(op: &'static str, e: impl std::fmt::Display) -> QueueError {
    QueueError::Remote {
        op,
        message: e.to_string(),
    }
}

impl SqsQueue {
    pub async fn connect(settings: &SqsSettings) -> SqsQueue {
        // Long polls last up to 20 s: the operation timeout must outlast them.
        let shared =
            crate::aws_sdk::sdk_config(settings.region.as_deref(), OPERATION_TIMEOUT).await;
        let mut conf = aws_sdk_sqs::config::Builder::from(&shared);
        if let Some(url) = &settings.endpoint {
            conf = conf.endpoint_url(url);
        }
        SqsQueue::with_client(Client::from_conf(conf.build()), settings)
    }

    pub fn with_client(client: Client, settings: &SqsSettings) -> SqsQueue {
        SqsQueue {
            client,
            settings: settings.clone(),
        }
    }

    pub fn settings(&self) -> &SqsSettings {
        &self.settings
    }

    pub(super) async fn send(&self, items: &[WorkItem]) -> Result<(), QueueError> {
        for chunk in items.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, item) in chunk.iter().enumerate() {
                let body = serde_json::to_string(item).map_err(|e| remote("send", e))?;
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| remote("send", e))?,
                );
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.settings.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| remote("send", DisplayErrorContext(e)))?;
            if let Some(f) = out.failed().first() {
                return Err(remote(
                    "send",
                    format!(
                        "{} of {} messages refused: {}",
                        out.failed().len(),
                        chunk.len(),
                        f.message().unwrap_or(f.code())
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let max = max.clamp(1, 10) as i32;
        let wait = wait.min(self.settings.wait_time).as_secs().min(20) as i32;
        let out = self
            .client
            .receive_message()
            .queue_url(&self.settings.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait)
            .visibility_timeout(self.settings.visibility_timeout.as_secs().clamp(1, 43_200) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| remote("receive", DisplayErrorContext(e)))?;
        let mut deliveries = Vec::new();
        for m in out.messages() {
            let (Some(body), Some(receipt)) = (m.body(), m.receipt_handle()) else {
                continue;
            };
            let receive_count = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            match serde_json::from_str::<WorkItem>(body) {
                Ok(item) => deliveries.push(Delivery {
                    item,
                    receive_count,
                    receipt: Receipt::Sqs(receipt.to_string()),
                }),
                Err(_) => {
                    // Not ours: nothing can ever process it. Leave it for the redrive policy
                    // to dead-letter, and say so once per delivery.
                    tracing::warn!(body = %body.chars().take(200).collect::<String>(), "queue message is not a brs work item");
                }
            }
        }
        Ok(deliveries)
    }

    pub(super) async fn set_visibility(
        &self,
        receipt: &str,
        after: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.settings.url)
            .receipt_handle(receipt)
            .visibility_timeout(after.as_secs().min(43_200) as i32)
            .send()
            .await
            .map_err(|e| remote("change visibility", DisplayErrorContext(e)))?;
        Ok(())
    }

    pub(super) async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.settings.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| remote("delete", DisplayErrorContext(e)))?;
        Ok(())
    }

    pub(super) fn max_receives(&self) -> u32 {
        self.settings.max_receives
    }

    pub(super) async fn backlog(&self) -> Option<u64> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.settings.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .ok()?;
        out.attributes()?
            .get(&QueueAttributeName::ApproximateNumberOfMessages)?
            .parse()
            .ok()
    }
}
