/// The admin API's OpenAPI 3.1 document, served at `/admin/v1/openapi.json`.
///
/// Kept by hand, in Swift rather than as a bundle resource: SwiftPM finds resources next to
/// the binary it built, so a `tollgate` copied onto `PATH` would lose them. `AdminDocumentTests`
/// proves the routes and this document agree, and CI fuzzes the server against it.
enum OpenAPIDocument {
    static let json = paths + components

    /// The document up to its `components`: the header and every operation.
    private static let paths = #"""
        {
          "openapi": "3.1.0",
          "info": {
            "title": "Tollgate admin API",
            "version": "1.0.0",
            "description": "The control plane of Tollgate, an API-key gateway: keys, their usage, rotation and usage exports. Served on the admin listener under /admin/v1 only when an admin token is configured; every operation but this document needs `Authorization: Bearer ADMIN_TOKEN`. Errors are application/problem+json with `title`, `status`, `detail`, `code` and, for a bad request member, `field`. A request whose `Host` is neither an IP address, `localhost` nor a name the server allows (`--admin-allowed-host`) is answered 421 `host_not_allowed`, against DNS rebinding."
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
                  },
                  "421": {
                    "$ref": "#/components/responses/HostNotAllowed"
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
                  "400": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "409": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "413": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "421": {
                    "$ref": "#/components/responses/HostNotAllowed"
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
                  "400": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "421": {
                    "$ref": "#/components/responses/HostNotAllowed"
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
                  "421": {
                    "$ref": "#/components/responses/HostNotAllowed"
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
                  "400": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "404": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "412": {
                    "$ref": "#/components/responses/PreconditionFailed"
                  },
                  "413": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "421": {
                    "$ref": "#/components/responses/HostNotAllowed"
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
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "404": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "412": {
                    "$ref": "#/components/responses/PreconditionFailed"
                  },
                  "421": {
                    "$ref": "#/components/responses/HostNotAllowed"
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
                  "421": {
                    "$ref": "#/components/responses/HostNotAllowed"
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
                  "400": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "404": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "413": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "421": {
                    "$ref": "#/components/responses/HostNotAllowed"
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
                  "400": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
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
                  "421": {
                    "$ref": "#/components/responses/HostNotAllowed"
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
                  "400": {
                    "$ref": "#/components/responses/Problem"
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "421": {
                    "$ref": "#/components/responses/HostNotAllowed"
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
        """#
}
