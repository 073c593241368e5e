// Renders /openapi.json as a plain HTML listing: operations, parameters, bodies, responses.
"use strict";

function text(tag, value, cls) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (cls) node.className = cls;
  return node;
}

function schemaText(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.allOf) return schema.allOf.map(schemaText).join(" + ");
  if (schema.anyOf) return schema.anyOf.map(schemaText).join(" | ");
  if (schema.enum) return schema.enum.join(" | ");
  if (schema.type === "array") return `array of ${schemaText(schema.items)}`;
  const type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "any";
  const limits = ["minimum", "maximum", "maxLength", "minLength", "default"]
    .filter((k) => schema[k] !== undefined).map((k) => `${k} ${schema[k]}`);
  return limits.length ? `${type} (${limits.join(", ")})` : type;
}

function table(header, rows) {
  const t = document.createElement("table");
  const head = t.insertRow();
  for (const h of header) head.append(text("th", h));
  for (const row of rows) {
    const tr = t.insertRow();
    for (const cell of row) tr.append(text("td", cell));
  }
  return t;
}

async function main() {
  const spec = await (await fetch("/openapi.json")).json();
  const doc = document.getElementById("doc");
  doc.replaceChildren(text("p", spec.info.description));
  document.getElementById("title").textContent = `${spec.info.title} API ${spec.info.version}`;
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const h = document.createElement("h2");
      h.append(text("span", method + " ", "method"), text("code", path));
      doc.append(h, text("p", op.summary));
      if (op.parameters) {
        doc.append(table(["parameter", "in", "schema", "description"],
          op.parameters.map((p) => [p.name, p.in, schemaText(p.schema), p.description || ""])));
      }
      if (op.requestBody) {
        doc.append(table(["body media type", "schema"],
          Object.entries(op.requestBody.content).map(([m, c]) => [m, schemaText(c.schema)])));
      }
      doc.append(table(["status", "description", "schema"],
        Object.entries(op.responses).map(([s, r]) => [s, r.description,
          Object.values(r.content || {}).map((c) => schemaText(c.schema)).join(", ")])));
    }
  }
  const schemas = spec.components.schemas;
  doc.append(text("h2", "Schemas"));
  for (const [name, schema] of Object.entries(schemas)) {
    doc.append(text("h3", name));
    const parts = schema.allOf || [schema];
    const rows = [];
    for (const part of parts) {
      if (part.$ref) rows.push(["(all of)", schemaText(part), ""]);
      for (const [prop, s] of Object.entries(part.properties || {})) {
        rows.push([prop, schemaText(s), (part.required || []).includes(prop) ? "required" : ""]);
      }
    }
    doc.append(rows.length ? table(["property", "schema", ""], rows) : text("p", schemaText(schema)));
  }
}

main().catch((err) => { document.getElementById("doc").textContent = String(err); });
