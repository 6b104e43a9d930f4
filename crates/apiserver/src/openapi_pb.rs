//! OpenAPI v2 in the protobuf encoding kubectl asks for (gnostic `openapi_v2.Document`).
