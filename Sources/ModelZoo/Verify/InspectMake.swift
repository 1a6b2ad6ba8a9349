extension InspectReport {
    /// The report with what each format adds: ONNX opset and operator counts, Keras versions.
    public static func make(_ file: WeightFile) -> InspectReport {
        var report = InspectReport(file: file)
        if let described = file as? DescribesContents { report.details += described.contentDetails }
        if let graph = file.graph?.onnx {
            report.opsetVersion = graph.opsetVersion
            report.operators = graph.operatorCountsSorted.map { ($0.op, $0.count) }
            report.details.append(("ir_version", String(graph.irVersion)))
            report.details.append(("nodes", String(graph.nodes.count)))
        }
        if !file.absentTensors.isEmpty {
            report.details.append(("listed but absent", file.absentTensors.joined(separator: ", ")))
        }
        return report
    }
}
