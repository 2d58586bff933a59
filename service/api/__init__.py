"""HTTP routers of the service: thin (parse -> call -> encode); they never touch ONNX Runtime or PyAV."""
