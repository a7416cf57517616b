/// The rsync command line for one stage of a recipe.
///
/// What keeps the served tree whole while it changes, from the FCIX nodes, ftpsync and tunasync:
/// `--delay-updates` gathers new and changed files in `.~tmp~` (never served) and renames them into
/// place at the end; `--delete-delay` removes what the upstream dropped only after the transfer, and
/// rsync skips deleting altogether after an I/O error; a dry run first (`plan`) says how much a run
/// would delete and copy, so a run that would empty a project because the upstream served an empty
/// tree is refused before it changes anything (`--max-delete` stays as a backstop should the
/// upstream change between the two); `--safe-links` keeps symlinks from pointing
/// out of the tree; `--perms` with `--chmod=u+rwX,go-w` keeps the upstream's read bits (content
/// staged 0750 before a release stays unreadable to the servers until the upstream's bitflip
/// opens it, and the next run carries that over without copying the data again) while nothing
/// becomes writable by anyone but the sync's user; `--filter=risk .~tmp~/` and `--exclude=.~tmp~/` leave rsync's own work area alone.
public enum RsyncInvocation {
    /// Arguments for `rsync` to bring `destination` (a directory) to what `source`
    /// (`rsync://host[:port]/module/`) holds, for `stage` of `recipe`.
    /// `maxDelete`: rsync `--max-delete` for a deleting stage (at least 1: rsync reads 0 as "delete nothing").
    public static func arguments(recipe: SyncRecipe, stage: SyncRecipe.Stage, source: String, destination: String, maxDelete: Int) -> [String] {
        var arguments = [
            "--recursive", "--links", "--safe-links", "--hard-links", "--times", "--perms", "--chmod=u+rwX,go-w",
            "--delay-updates", "--filter=risk .~tmp~/", "--exclude=.~tmp~/",
            "--timeout=\(recipe.ioTimeout)", "--contimeout=60", "--no-motd", "--stats", "--no-human-readable",
        ]
        if let limit = recipe.bandwidthLimit { arguments.append("--bwlimit=\(limit)") }
        if !stage.links { arguments.append("--no-links") }
        if stage.delete { arguments += ["--delete-delay", "--max-delete=\(max(1, maxDelete))"] }
        for pattern in recipe.exclude + stage.exclude { arguments.append("--exclude=\(pattern)") }
        arguments += [source.hasSuffix("/") ? source : source + "/", destination.hasSuffix("/") ? destination : destination + "/"]
        return arguments
    }

    /// A dry run of the whole recipe (every stage's files, deleting) that changes nothing: its
    /// `--stats` say how many files a run would delete and how many bytes it would copy.
    public static func plan(recipe: SyncRecipe, source: String, destination: String) -> [String] {
        var arguments = [
            "--dry-run", "--recursive", "--links", "--safe-links", "--hard-links", "--times", "--perms", "--chmod=u+rwX,go-w",
            "--delete", "--filter=risk .~tmp~/", "--exclude=.~tmp~/",
            "--timeout=\(recipe.ioTimeout)", "--contimeout=60", "--no-motd", "--stats", "--no-human-readable",
        ]
        for pattern in recipe.exclude { arguments.append("--exclude=\(pattern)") }
        arguments += [source.hasSuffix("/") ? source : source + "/", destination.hasSuffix("/") ? destination : destination + "/"]
        return arguments
    }

    /// `rsync://host/` plus a module: the source of a project.
    public static func source(upstream: String, module: String) -> String {
        (upstream.hasSuffix("/") ? upstream : upstream + "/") + module + "/"
    }
}
