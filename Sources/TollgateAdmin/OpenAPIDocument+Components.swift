extension OpenAPIDocument {
    /// The document's `components` (shared parameters, responses, schemas) and its end.
    static let components = #"""
          "components": {
            "securitySchemes": {
              "adminToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "The token from TOLLGATE_ADMIN_TOKEN, --admin-token-file or --admin-token."
              }
            },
            "parameters": {
              "KeyID": {
                "name": "id",
                "in": "path",
                "required": true,
                "description": "The key's public id.",
                "schema": {
                  "type": "string",
                  "minLength": 1,
                  "maxLength": 64
                }
              },
              "IfMatch": {
                "name": "If-Match",
                "in": "header",
                "required": false,
                "description": "Change the key only if it is still as read: an ETag from GET or PATCH (a list of them, or *). A key changed since is answered 412 precondition_failed and left as it is.",
                "schema": {
                  "type": "string"
                }
              }
            },
            "headers": {
              "ETag": {
                "description": "The version of the key's record, for If-Match; opaque.",
                "schema": {
                  "type": "string"
                }
              }
            },
            "responses": {
              "HostNotAllowed": {
                "description": "The request's Host is neither an IP address, localhost nor an allowed name (host_not_allowed).",
                "content": {
                  "application/problem+json": {
                    "schema": {
                      "$ref": "#/components/schemas/Problem"
                    }
                  }
                }
              },
              "PreconditionFailed": {
                "description": "If-Match names a version the key is no longer at (precondition_failed): read it again.",
                "content": {
                  "application/problem+json": {
                    "schema": {
                      "$ref": "#/components/schemas/Problem"
                    }
                  }
                }
              },
              "Problem": {
                "description": "An error (RFC 9457).",
                "content": {
                  "application/problem+json": {
                    "schema": {
                      "$ref": "#/components/schemas/Problem"
                    }
                  }
                }
              },
              "Unauthorized": {
                "description": "No admin token, or not the right one.",
                "headers": {
                  "WWW-Authenticate": {
                    "description": "Bearer.",
                    "schema": {
                      "type": "string"
                    }
                  }
                },
                "content": {
                  "application/problem+json": {
                    "schema": {
                      "$ref": "#/components/schemas/Problem"
                    }
                  }
                }
              }
            },
            "schemas": {
              "Problem": {
                "type": "object",
                "required": [
                  "title",
                  "status",
                  "detail",
                  "code"
                ],
                "properties": {
                  "title": {
                    "type": "string"
                  },
                  "status": {
                    "type": "integer"
                  },
                  "detail": {
                    "type": "string"
                  },
                  "code": {
                    "type": "string",
                    "description": "invalid_request, key_not_found, key_exists, missing_admin_token, invalid_admin_token, body_too_large, not_found, host_not_allowed, store_unavailable, internal_error."
                  },
                  "field": {
                    "type": "string",
                    "description": "The request member at fault, e.g. `limits[1]`."
                  },
                  "correlation_id": {
                    "type": "string",
                    "description": "On a 5xx: the id the server's log line holds."
                  }
                }
              },
              "Key": {
                "type": "object",
                "required": [
                  "id",
                  "name",
                  "scopes",
                  "limits",
                  "status",
                  "created_at"
                ],
                "properties": {
                  "id": {
                    "type": "string"
                  },
                  "name": {
                    "type": "string"
                  },
                  "scopes": {
                    "type": "array",
                    "items": {
                      "type": "string"
                    }
                  },
                  "limits": {
                    "type": "array",
                    "items": {
                      "type": "string"
                    }
                  },
                  "status": {
                    "type": "string",
                    "enum": [
                      "active",
                      "revoked",
                      "expired"
                    ]
                  },
                  "created_at": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "expires_at": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "revoked_at": {
                    "type": "string",
                    "format": "date-time"
                  }
                }
              },
              "IssuedKey": {
                "allOf": [
                  {
                    "$ref": "#/components/schemas/Key"
                  },
                  {
                    "type": "object",
                    "required": [
                      "key"
                    ],
                    "properties": {
                      "key": {
                        "type": "string",
                        "description": "The secret, shown this once."
                      },
                      "previous_key_expires_at": {
                        "type": "string",
                        "format": "date-time",
                        "description": "After a rotation: when the previous secret stops working."
                      }
                    }
                  }
                ]
              },
              "KeyCreate": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                  "name": {
                    "type": "string",
                    "maxLength": 200,
                    "description": "A name to recognize the key by: visible text, without control, invisible, direction-changing or line-separating characters."
                  },
                  "scopes": {
                    "type": "array",
                    "items": {
                      "type": "string",
                      "maxLength": 256
                    },
                    "description": "API patterns the key may reach: `*`, `api1`, `api1*`, `api1/`, `/`; at most 64, each at most 256 characters.",
                    "maxItems": 64
                  },
                  "limits": {
                    "type": "array",
                    "maxItems": 64,
                    "items": {
                      "type": "string"
                    },
                    "description": "Quotas as on the CLI: `N/PERIOD` or `PATTERN:N/PERIOD`, PERIOD one of total, second, minute, hour, day, month. A limit's pattern is at most 256 characters."
                  },
                  "expires_at": {
                    "type": [
                      "string",
                      "null"
                    ],
                    "description": "A span from now (`30d`, `12h`), a date (`2030-01-01`) or an RFC 3339 time; `null` for no expiry."
                  }
                }
              },
              "KeyUpdate": {
                "$ref": "#/components/schemas/KeyCreate"
              },
              "Rotate": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                  "overlap": {
                    "type": "string",
                    "description": "How long the previous secret keeps working: a span such as `24h`, `30m`, `7d` or `0s` (default `24h`, at most `365d`)."
                  }
                }
              },
              "Usage": {
                "type": "object",
                "required": [
                  "id",
                  "name",
                  "status",
                  "apis",
                  "limits"
                ],
                "properties": {
                  "id": {
                    "type": "string"
                  },
                  "name": {
                    "type": "string"
                  },
                  "status": {
                    "type": "string",
                    "enum": [
                      "active",
                      "revoked",
                      "expired"
                    ],
                    "description": "What is left of a limit serves requests only while the key is active."
                  },
                  "apis": {
                    "type": "object",
                    "additionalProperties": {
                      "type": "object",
                      "required": [
                        "admitted",
                        "denied",
                        "denied_by_reason"
                      ],
                      "properties": {
                        "admitted": {
                          "type": "integer"
                        },
                        "denied": {
                          "type": "integer"
                        },
                        "denied_by_reason": {
                          "type": "object",
                          "additionalProperties": {
                            "type": "integer"
                          }
                        }
                      }
                    }
                  },
                  "limits": {
                    "type": "array",
                    "items": {
                      "type": "object",
                      "required": [
                        "scope",
                        "limit",
                        "period",
                        "used",
                        "remaining",
                        "resets_at"
                      ],
                      "properties": {
                        "scope": {
                          "type": "string"
                        },
                        "limit": {
                          "type": "integer"
                        },
                        "period": {
                          "type": "string",
                          "enum": [
                            "total",
                            "second",
                            "minute",
                            "hour",
                            "day",
                            "month"
                          ]
                        },
                        "used": {
                          "type": "integer"
                        },
                        "remaining": {
                          "type": "integer"
                        },
                        "resets_at": {
                          "type": [
                            "string",
                            "null"
                          ],
                          "format": "date-time"
                        }
                      }
                    }
                  }
                }
              }
            }
          }
        }
        """#
}
