/// The admin API's OpenAPI 3.1 document, served at `/admin/v1/openapi.json`.
///
/// Kept by hand, in Swift rather than as a bundle resource: SwiftPM finds resources next to
/// the binary it built, so a `tollgate` copied onto `PATH` would lose them. `AdminDocumentTests`
/// proves the routes and this document agree, and CI fuzzes the server against it.
enum OpenAPIDocument {
    static let json = #"""
        {
          "openapi": "3.1.0",
          "info": {
            "title": "Tollgate admin API",
            "version": "1.0.0",
            "description": "The control plane of Tollgate, an API-key gateway: keys, their usage, rotation and usage exports. Served on the admin listener under /admin/v1 only when an admin token is configured; every operation but this document needs `Authorization: Bearer ADMIN_TOKEN`. Errors are application/problem+json with `title`, `status`, `detail`, `code` and, for a bad request member, `field`."
          },
          "security": [
            {
              "adminToken": []
            }
          ],
          "paths": {
            "/admin/v1/openapi.json": {
              "get": {
                "operationId": "getOpenAPIDocument",
                "summary": "This document (no token needed).",
                "responses": {
                  "200": {
                    "description": "The OpenAPI document.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "type": "object"
                        }
                      }
                    }
                  }
                },
                "security": []
              }
            },
            "/admin/v1/keys": {
              "post": {
                "operationId": "createKey",
                "summary": "Create a key; the answer holds its secret, this once.",
                "responses": {
                  "201": {
                    "description": "The key with its secret `key`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/IssuedKey"
                        }
                      }
                    },
                    "headers": {
                      "Location": {
                        "description": "The key's URL.",
                        "schema": {
                          "type": "string"
                        }
                      }
                    }
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "400": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "409": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "413": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "503": {
                    "$ref": "#/components/responses/Problem"
                  }
                },
                "requestBody": {
                  "required": false,
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/KeyCreate"
                      }
                    }
                  }
                }
              },
              "get": {
                "operationId": "listKeys",
                "summary": "List keys in id order, a page at a time (no secrets).",
                "responses": {
                  "200": {
                    "description": "A page of keys. When another page follows, `Link: </admin/v1/keys?after=ID&limit=N>; rel=\"next\"` says where it starts.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "type": "array",
                          "items": {
                            "$ref": "#/components/schemas/Key"
                          }
                        }
                      }
                    },
                    "headers": {
                      "Link": {
                        "description": "The next page, if any (RFC 8288, rel=\"next\").",
                        "schema": {
                          "type": "string"
                        }
                      }
                    }
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "400": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "503": {
                    "$ref": "#/components/responses/Problem"
                  }
                },
                "parameters": [
                  {
                    "name": "after",
                    "in": "query",
                    "description": "Start after this key id (the last id of the previous page).",
                    "schema": {
                      "type": "string"
                    }
                  },
                  {
                    "name": "limit",
                    "in": "query",
                    "description": "Keys per page, 1 to 1000 (default 1000).",
                    "schema": {
                      "type": "integer",
                      "minimum": 1,
                      "maximum": 1000
                    }
                  }
                ]
              }
            },
            "/admin/v1/keys/{id}": {
              "parameters": [
                {
                  "$ref": "#/components/parameters/KeyID"
                }
              ],
              "get": {
                "operationId": "getKey",
                "summary": "One key (no secret).",
                "responses": {
                  "200": {
                    "description": "The key.",
                    "headers": {
                      "ETag": {
                        "$ref": "#/components/headers/ETag"
                      }
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Key"
                        }
                      }
                    }
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "404": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "503": {
                    "$ref": "#/components/responses/Problem"
                  }
                }
              },
              "patch": {
                "operationId": "updateKey",
                "summary": "Change a key's name, scopes, limits or expiry; members left out are kept, and only the members given are written, in one step at the store. Takes effect at once on this instance.",
                "parameters": [
                  {
                    "$ref": "#/components/parameters/IfMatch"
                  }
                ],
                "responses": {
                  "200": {
                    "description": "The key as stored after the change.",
                    "headers": {
                      "ETag": {
                        "$ref": "#/components/headers/ETag"
                      }
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Key"
                        }
                      }
                    }
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "400": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "404": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "413": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "412": {
                    "$ref": "#/components/responses/PreconditionFailed"
                  },
                  "503": {
                    "$ref": "#/components/responses/Problem"
                  }
                },
                "requestBody": {
                  "required": false,
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/KeyUpdate"
                      }
                    }
                  }
                }
              },
              "delete": {
                "operationId": "revokeKey",
                "summary": "Revoke a key: it is refused with key_revoked at once. Revoking again keeps the first time.",
                "parameters": [
                  {
                    "$ref": "#/components/parameters/IfMatch"
                  }
                ],
                "responses": {
                  "204": {
                    "description": "Revoked."
                  },
                  "412": {
                    "$ref": "#/components/responses/PreconditionFailed"
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "404": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "503": {
                    "$ref": "#/components/responses/Problem"
                  }
                }
              }
            },
            "/admin/v1/keys/{id}/usage": {
              "parameters": [
                {
                  "$ref": "#/components/parameters/KeyID"
                }
              ],
              "get": {
                "operationId": "getKeyUsage",
                "summary": "A key's usage: the object `tollgate usage ID --json` prints.",
                "responses": {
                  "200": {
                    "description": "The usage.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Usage"
                        }
                      }
                    }
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "404": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "503": {
                    "$ref": "#/components/responses/Problem"
                  }
                }
              }
            },
            "/admin/v1/keys/{id}/usage/reset": {
              "parameters": [
                {
                  "$ref": "#/components/parameters/KeyID"
                }
              ],
              "post": {
                "operationId": "resetKeyUsage",
                "summary": "Start a key's counters and per-API counts again from zero. Logged with the caller's address, the time and the request id.",
                "responses": {
                  "200": {
                    "description": "The usage after the reset.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Usage"
                        }
                      }
                    },
                    "headers": {
                      "Request-Id": {
                        "description": "The id the server's log line holds.",
                        "schema": {
                          "type": "string"
                        }
                      }
                    }
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "400": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "404": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "413": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "503": {
                    "$ref": "#/components/responses/Problem"
                  }
                },
                "requestBody": {
                  "required": false,
                  "description": "Empty, or an empty object.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "type": "object",
                        "additionalProperties": false
                      }
                    }
                  }
                }
              }
            },
            "/admin/v1/keys/{id}/rotate": {
              "parameters": [
                {
                  "$ref": "#/components/parameters/KeyID"
                }
              ],
              "post": {
                "operationId": "rotateKey",
                "summary": "Give a key a new secret; id, scopes, limits and usage stay. The previous secret keeps working for the overlap, then is refused with key_revoked.",
                "responses": {
                  "200": {
                    "description": "The key with its new secret `key`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/IssuedKey"
                        }
                      }
                    }
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "400": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "404": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "409": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "413": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "503": {
                    "$ref": "#/components/responses/Problem"
                  }
                },
                "requestBody": {
                  "required": false,
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/Rotate"
                      }
                    }
                  }
                }
              }
            },
            "/admin/v1/usage": {
              "get": {
                "operationId": "exportUsage",
                "summary": "Every key's usage per API and per limit, streamed a page of keys at a time (for billing).",
                "responses": {
                  "200": {
                    "description": "json: an array of usage objects; ndjson: one a line; csv: one row per key and API and per key and limit, columns key_id,name,kind,api,admitted,denied,scope_denied,quota_exceeded,key_revoked,key_expired,scope,limit,period,used,remaining,resets_at.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "type": "array",
                          "items": {
                            "$ref": "#/components/schemas/Usage"
                          }
                        }
                      },
                      "application/x-ndjson": {
                        "schema": {
                          "type": "string"
                        }
                      },
                      "text/csv": {
                        "schema": {
                          "type": "string"
                        }
                      }
                    }
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "400": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "503": {
                    "$ref": "#/components/responses/Problem"
                  }
                },
                "parameters": [
                  {
                    "name": "format",
                    "in": "query",
                    "description": "json (default), ndjson or csv.",
                    "schema": {
                      "type": "string",
                      "enum": [
                        "json",
                        "ndjson",
                        "csv"
                      ]
                    }
                  }
                ]
              }
            }
          },
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
                    "description": "invalid_request, key_not_found, key_exists, missing_admin_token, invalid_admin_token, body_too_large, not_found, store_unavailable, internal_error."
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
                    "description": "A name to recognize the key by; printable text."
                  },
                  "scopes": {
                    "type": "array",
                    "items": {
                      "type": "string"
                    },
                    "description": "API patterns the key may reach: `*`, `api1`, `api1*`, `api1/`, `/`."
                  },
                  "limits": {
                    "type": "array",
                    "maxItems": 64,
                    "items": {
                      "type": "string"
                    },
                    "description": "Quotas as on the CLI: `N/PERIOD` or `PATTERN:N/PERIOD`, PERIOD one of total, second, minute, hour, day, month."
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
