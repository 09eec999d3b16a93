//! HTTP answers read with a byte limit: a service (or something posing as one) that answers
//! without end must not take the process past its memory quota.

/// Why a bounded read stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the answer: {0}")]
    Read(#[source] reqwest::Error),
}

/// Calls `each` with every chunk of the body as it arrives, and fails as soon as more than
/// `limit` bytes came (or the announced length says they will).
pub async fn for_each_chunk(
    resp: &mut reqwest::Response,
    limit: u64,
    mut each: impl FnMut(&[u8]),
) -> Result<u64, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge { limit });
    }
    let mut seen = 0u64;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ReadError::Read(e.without_url()))?
    {
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(ReadError::TooLarge { limit });
        }
        each(&chunk);
    }
    Ok(seen)
}

/// The whole body, at most `limit` bytes.
pub async fn read(mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    for_each_chunk(&mut resp, limit, |c| body.extend_from_slice(c)).await?;
    Ok(body)
}

/// The start of a body, at most `limit` bytes, for an error message; the rest is not read.
pub async fn prefix(mut resp: reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    while body.len() < limit {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(limit - body.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}
