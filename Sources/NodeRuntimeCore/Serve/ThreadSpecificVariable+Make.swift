import NIOPosix

extension ThreadSpecificVariable {
    /// The calling thread's value, made by `make` on its first use on this thread.
    func value(orMake make: () -> Value) -> Value {
        if let existing = currentValue { return existing }
        let made = make()
        currentValue = made
        return made
    }
}
