import ArgumentParser

/// `tollgate`: the gateway and the operator's tools in one binary.
@main
struct Tollgate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tollgate",
        abstract: "An API-key gateway: serves APIs to keys, within their scopes and quotas.",
        discussion: """
            With no subcommand, 'tollgate' runs 'tollgate serve'.
            Store URLs: sqlite:PATH (default sqlite:tollgate.sqlite), memory:
            """,
        subcommands: [Serve.self, Keys.self, Usage.self],
        defaultSubcommand: Serve.self
    )
}
