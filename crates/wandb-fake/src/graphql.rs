//! The executable schema: built at start-up from `wandb-api`'s `schema.graphql` extended by
//! the fake's `server.graphql` (what W&B's own agent sends for its bookkeeping run), so
//! requests are parsed and validated by async-graphql against exactly those types, with
//! the fields resolved by [`crate::resolvers`].
//!
//! Object values are plain `serde_json::Value`s: a field without arguments reads its value
//! from the parent object; root fields and fields with arguments go to the resolvers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, Scalar,
    Schema, SchemaBuilder, TypeRef,
};
use async_graphql::parser::types::{
    BaseType, FieldDefinition, ServiceDocument, Type, TypeDefinition, TypeKind,
    TypeSystemDefinition,
};
use async_graphql::{Name, Value as GqlValue};
use serde_json::Value;

use crate::model::FakeUser;
use crate::resolvers::{Call, resolve};
use crate::shared::SharedStore;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Enum,
    Scalar,
}

/// What every field resolver shares.
#[derive(Clone)]
struct Context {
    store: SharedStore,
    kinds: Arc<HashMap<String, Kind>>,
}

/// The roots a schema document names.
struct Roots {
    query: String,
    mutation: Option<String>,
}

impl Roots {
    fn is_root(&self, type_name: &str) -> bool {
        type_name == self.query || self.mutation.as_deref() == Some(type_name)
    }
}

/// The server-side types W&B's agent needs beyond the client's schema.
pub(crate) const SERVER_EXTENSIONS: &str = include_str!("server.graphql");

/// Builds the executable schema from SDL text plus `extensions` (SDL whose `extend`
/// definitions add fields to types of `sdl`). `extra_enum_values` adds values to enums
/// (a newer server's).
pub(crate) fn build_schema(
    sdl: &str,
    extensions: &str,
    extra_enum_values: &BTreeMap<String, Vec<String>>,
    store: SharedStore,
) -> anyhow::Result<Schema> {
    let mut document = async_graphql::parser::parse_schema(sdl)?;
    let extension = async_graphql::parser::parse_schema(extensions)?;
    merge_extensions(&mut document, extension)?;
    let (kinds, roots) = kinds_and_roots(&document);
    let context = Context {
        store,
        kinds: Arc::new(kinds),
    };
    let mut builder = Schema::build(&roots.query, roots.mutation.as_deref(), None);
    for definition in &document.definitions {
        if let TypeSystemDefinition::Type(ty) = definition {
            builder = register(builder, &ty.node, &roots, extra_enum_values, &context)?;
        }
    }
    Ok(builder.finish()?)
}

/// Adds the fields of every `extend type`/`extend input` of `extension` to the type of
/// that name in `document`, and its other definitions as new types.
fn merge_extensions(
    document: &mut ServiceDocument,
    extension: ServiceDocument,
) -> anyhow::Result<()> {
    for definition in extension.definitions {
        let TypeSystemDefinition::Type(ty) = definition else {
            anyhow::bail!("the schema extension may only define or extend types");
        };
        if !ty.node.extend {
            document.definitions.push(TypeSystemDefinition::Type(ty));
            continue;
        }
        let name = ty.node.name.node.clone();
        let base = document.definitions.iter_mut().find_map(|d| match d {
            TypeSystemDefinition::Type(base) if base.node.name.node == name => Some(base),
            _ => None,
        });
        let Some(base) = base else {
            anyhow::bail!("the schema extension extends {name}, which the schema does not define");
        };
        match (&mut base.node.kind, ty.node.kind) {
            (TypeKind::Object(base), TypeKind::Object(more)) => base.fields.extend(more.fields),
            (TypeKind::InputObject(base), TypeKind::InputObject(more)) => {
                base.fields.extend(more.fields);
            }
            _ => anyhow::bail!("the schema extension extends {name} with another kind of type"),
        }
    }
    Ok(())
}

fn kinds_and_roots(document: &ServiceDocument) -> (HashMap<String, Kind>, Roots) {
    let mut kinds = HashMap::new();
    let mut roots = Roots {
        query: "Query".to_owned(),
        mutation: None,
    };
    for definition in &document.definitions {
        match definition {
            TypeSystemDefinition::Type(ty) => {
                let kind = match &ty.node.kind {
                    TypeKind::Object(_) => Kind::Object,
                    TypeKind::Enum(_) => Kind::Enum,
                    _ => Kind::Scalar,
                };
                kinds.insert(ty.node.name.node.to_string(), kind);
            }
            TypeSystemDefinition::Schema(schema) => {
                if let Some(query) = &schema.node.query {
                    roots.query = query.node.to_string();
                }
                roots.mutation = schema.node.mutation.as_ref().map(|m| m.node.to_string());
            }
            TypeSystemDefinition::Directive(_) => {}
        }
    }
    (kinds, roots)
}

fn register(
    builder: SchemaBuilder,
    ty: &TypeDefinition,
    roots: &Roots,
    extra_enum_values: &BTreeMap<String, Vec<String>>,
    context: &Context,
) -> anyhow::Result<SchemaBuilder> {
    let type_name = ty.name.node.to_string();
    Ok(match &ty.kind {
        TypeKind::Scalar => builder.register(Scalar::new(&type_name)),
        TypeKind::Enum(values) => {
            let known = values.values.iter().map(|v| v.node.value.node.to_string());
            let extra = extra_enum_values.get(&type_name).into_iter().flatten();
            let items = known.chain(extra.cloned());
            builder.register(Enum::new(&type_name).items(items))
        }
        TypeKind::InputObject(input) => {
            let mut object = InputObject::new(&type_name);
            for field in &input.fields {
                object = object.field(InputValue::new(
                    field.node.name.node.to_string(),
                    type_ref(&field.node.ty.node),
                ));
            }
            builder.register(object)
        }
        TypeKind::Object(object_type) => {
            let computed_type = roots.is_root(&type_name);
            let mut object = Object::new(&type_name);
            for field in &object_type.fields {
                object = object.field(field_of(&type_name, &field.node, computed_type, context));
            }
            builder.register(object)
        }
        TypeKind::Interface(_) | TypeKind::Union(_) => {
            anyhow::bail!("the fake does not support interfaces or unions ({type_name})")
        }
    })
}

/// A field: resolved by [`resolve`] when it is a root field or has arguments, else read
/// from the parent object.
fn field_of(owner: &str, field: &FieldDefinition, root: bool, context: &Context) -> Field {
    let field_name = field.name.node.to_string();
    let field_type = field.ty.node.clone();
    let computed = root || !field.arguments.is_empty();
    let context = context.clone();
    let owner = owner.to_owned();
    let name = field_name.clone();
    let mut graphql_field = Field::new(field_name, type_ref(&field_type), move |ctx| {
        let context = context.clone();
        let owner = owner.clone();
        let name = name.clone();
        let field_type = field_type.clone();
        FieldFuture::new(async move {
            let value = if computed {
                resolve_field(&context, &owner, &name, &ctx)?
            } else {
                ctx.parent_value
                    .downcast_ref::<Value>()
                    .and_then(|parent| parent.get(&name))
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            to_field_value(value, &field_type, &context.kinds)
        })
    });
    for argument in &field.arguments {
        graphql_field = graphql_field.argument(InputValue::new(
            argument.node.name.node.to_string(),
            type_ref(&argument.node.ty.node),
        ));
    }
    graphql_field
}

fn resolve_field(
    context: &Context,
    owner: &str,
    field: &str,
    ctx: &ResolverContext<'_>,
) -> async_graphql::Result<Value> {
    let mut args = serde_json::Map::new();
    for (name, value) in ctx.args.as_index_map() {
        args.insert(name.to_string(), value.clone().into_json()?);
    }
    let call = Call {
        user: ctx.data::<FakeUser>()?,
        parent: ctx.parent_value.downcast_ref::<Value>(),
        args: &args,
    };
    let mut store = context.store.write();
    resolve(&mut store, owner, field, &call).map_err(|e| async_graphql::Error::new(e.to_string()))
}

fn type_ref(ty: &Type) -> TypeRef {
    let inner = match &ty.base {
        BaseType::Named(name) => TypeRef::Named(name.to_string().into()),
        BaseType::List(item) => TypeRef::List(Box::new(type_ref(item))),
    };
    if ty.nullable {
        inner
    } else {
        TypeRef::NonNull(Box::new(inner))
    }
}

fn to_field_value(
    value: Value,
    ty: &Type,
    kinds: &HashMap<String, Kind>,
) -> async_graphql::Result<Option<FieldValue<'static>>> {
    if value.is_null() {
        return Ok(None);
    }
    match &ty.base {
        BaseType::List(item_type) => {
            let Value::Array(items) = value else {
                return Err(async_graphql::Error::new(format!(
                    "fake resolver returned a non-list for {ty}"
                )));
            };
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(to_field_value(item, item_type, kinds)?.unwrap_or(FieldValue::NULL));
            }
            Ok(Some(FieldValue::list(out)))
        }
        BaseType::Named(name) => match kinds.get(name.as_str()).copied() {
            Some(Kind::Object) => Ok(Some(FieldValue::owned_any(value))),
            Some(Kind::Enum) => match value {
                Value::String(text) => Ok(Some(FieldValue::value(GqlValue::Enum(Name::new(text))))),
                other => Err(async_graphql::Error::new(format!(
                    "fake resolver returned {other} for enum {name}"
                ))),
            },
            _ => Ok(Some(FieldValue::value(GqlValue::from_json(value)?))),
        },
    }
}
