// The whole bot in one resource group: Function App (Flex Consumption, Linux, Python 3.11),
// storage (AzureWebJobsStorage + the operations queue), Application Insights, Cosmos DB
// (serverless) and the Azure Bot with its Direct Line channel. Three ways to deploy it, all
// described in docs/deploy.md:
//
//   azd up                              (azure.yaml; main.parameters.json maps azd's environment)
//   az deployment group create -g <group> --template-file infra/main.bicep \
//     --parameters appName=<globally-unique-name>
//   func azure functionapp publish <appName> --python
//   .github/workflows/deploy.yml        (manual; OIDC login, az bicep build, deploy, publish)
//
// Hosting plan: Flex Consumption (FC1), not Consumption (Y1).
//   * Linux Consumption gets no new features or language versions and retires on
//     2028-09-30; Flex Consumption is Microsoft's serverless plan for new Linux apps.
//   * functionTimeout: host.json asks for 00:10:00, the Consumption maximum. An operation
//     runs up to OperationTimeoutSeconds (600 s by default) inside the queue-triggered
//     worker, so on Consumption it would sit exactly at the hard ceiling; Flex defaults to
//     30 minutes and allows more, so host.json can give the worker head room.
//   * Cold start: the Bot Service waits about 15 s for /api/messages. Flex can keep
//     instances of the HTTP group warm (alwaysReadyHttpInstances; 0 = pay per use only).
//   * VNet integration and private endpoints are available on Flex (not on Linux Consumption),
//     should the storage or Cosmos DB account later be closed to the internet.
//   * Managed identity: Flex reads its deployment package through the app's identity (no
//     storage key in WEBSITE_RUN_FROM_PACKAGE) and supports identity-based host storage.
//   * `func azure functionapp publish <app> --python` works with Flex (current Core Tools v4
//     detect the plan and publish with a remote build from requirements.txt).
//   Limits to know: Flex is offered in a subset of regions
//   (`az functionapp list-flexconsumption-locations`), and FUNCTIONS_WORKER_RUNTIME /
//   FUNCTIONS_EXTENSION_VERSION are not app settings there: the runtime is
//   functionAppConfig.runtime below.
//
// Identities and secrets (none is written to the repository or to an output):
//   * Bot identity: MicrosoftAppType=UserAssignedMSI with a user-assigned managed identity
//     (no password to create, store or rotate). The identity is attached to the Function App
//     and registered on the Azure Bot (msaAppMSIResourceId).
//   * Cosmos DB: the Function App's system-assigned identity holds the built-in data-plane
//     role "Cosmos DB Built-in Data Contributor"; CosmosDbAuthKey stays empty, so
//     services/cosmos.py uses DefaultAzureCredential, and key access is disabled on the
//     account. The database and both containers are created HERE: data-plane RBAC cannot
//     create them, and the app's create_*_if_not_exists only reads them when they exist.
//   * AzureWebJobsStorage: a connection string (account key), because the app's own queue
//     sender (services/operation_queue.py) calls QueueClient.from_connection_string(...)
//     with that setting, and services/settings.py requires it. Moving to an identity-based
//     connection (AzureWebJobsStorage__accountName) needs a code change: see docs/deploy.md.
//     The deployment package container is read through the system-assigned identity.
//   * DirectLineSecret: read from the Direct Line channel at deployment (listChannelWithKeys).
//   * OperationSigningKey: a @secure() parameter whose default is newGuid(), so every
//     deployment that does not pass it generates a fresh key (122 random bits). Pass
//     operationSigningKey=<value> to keep one across deployments (azd's preprovision hook
//     generates one once and passes it every time); see docs/deploy.md.
//   * Application Insights: local (instrumentation key) authentication is off, as in
//     Microsoft's Flex Consumption samples. The host sends telemetry with the app's
//     system-assigned identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD),
//     which holds "Monitoring Metrics Publisher" on the component.

targetScope = 'resourceGroup'

@description('azd environment name (AZURE_ENV_NAME), kept in the azd-env-name tag. Empty: no tag.')
param environmentName string = ''

@description('Region for every resource except the Azure Bot (always global). Must offer Flex Consumption.')
param location string = resourceGroup().location

@description('Function App name: globally unique, becomes <appName>.azurewebsites.net. Also names the Azure Bot.')
@minLength(2)
@maxLength(43)
param appName string = 'bot-${uniqueString(resourceGroup().id)}'

@description('Display name shown by the Azure Bot.')
param botDisplayName string = appName

@description('Azure Bot pricing tier: F0 (free, standard channels limited in messages) or S1.')
@allowed([
  'F0'
  'S1'
])
param botSku string = 'F0'

@description('Flex Consumption instance memory, MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex Consumption scale-out limit.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready instances for the HTTP group (messages). 0: none, billed per use only; 1 avoids most cold starts at a fixed cost.')
@minValue(0)
param alwaysReadyHttpInstances int = 0

@description('Seconds of inactivity after which a conversation expires (ExpireAfterSeconds).')
@minValue(1)
param expireAfterSeconds int = 1800

@description('Cosmos DB defaultTtl of the conversation state container, seconds (CosmosDbTimeToLive).')
@minValue(1)
param cosmosTimeToLiveSeconds int = 86400

@description('Seconds an operation may run before it is reported as timed out (OperationTimeoutSeconds).')
@minValue(1)
param operationTimeoutSeconds int = 600

@description('Name of the operations queue; its poison queue is <name>-poison.')
param operationsQueueName string = 'long-operations'

@description('Cosmos DB database id.')
param cosmosDatabaseName string = 'bot-db'

@description('Cosmos DB container for conversation state (has a default TTL).')
param conversationContainerName string = 'conversation-state'

@description('Cosmos DB container for user state (no TTL).')
param userContainerName string = 'user-state'

@description('Direct Line REST endpoint the worker posts results to. Use the regional one (e.g. Europe) if the bot is regional.')
param directLineEndpoint string = 'https://directline.botframework.com/v3/directline'

@description('NCRONTAB (six fields, seconds first, UTC) of the expiry sweeper (SweepSchedule).')
param sweepSchedule string = '0 */1 * * * *'

@description('Whether the sweeper tells a user that their conversation expired (ExpiryNoticeEnabled).')
param expiryNoticeEnabled bool = true

@description('Text of the expiry notice; {duration} (e.g. 5 min, 90 s) or {minutes} is filled in (ExpiryNoticeText).')
param expiryNoticeText string = 'This conversation was closed after {duration} without activity. Send anything to start again.'

@description('Whether every message in and out of a conversation is recorded in Azure Table storage (TranscriptsEnabled).')
param transcriptsEnabled bool = true

@description('Azure Table (in the app\'s storage account) holding the transcripts (TranscriptTableName).')
param transcriptTableName string = 'transcripts'

@description('Days a transcript is kept; an hourly timer deletes older entries (TranscriptRetentionDays).')
@minValue(1)
param transcriptRetentionDays int = 30

@description('Whether the user\'s own text is replaced by [redacted] in transcripts (TranscriptRedactUserText).')
param transcriptRedactUserText bool = false

@description('Seconds a handoff to a person may wait to be accepted before it is failed back to the user (HandoffTimeoutSeconds).')
@minValue(1)
param handoffTimeoutSeconds int = 300

@description('Messages in a row the bot does not understand before it hands the user to a person; 0: never (HandoffAfterMisunderstandings).')
@minValue(0)
param handoffAfterMisunderstandings int = 3

@description('Cosmos DB container for each user\'s latest conversation reference and notification topics (CosmosDbReferenceContainerId).')
param referenceContainerName string = 'conversation-references'

@description('Queue of notifications from outside events (ExternalEventsQueueName); its poison queue is <name>-poison.')
param externalEventsQueueName string = 'external-events'

@description('Proactive notifications sent per second by each instance (NotificationsPerSecond).')
param notificationsPerSecond string = '10'

@description('HMAC key the worker signs operation results with. Default: a new random GUID on every deployment. Pass your own (at least 32 characters) to keep it stable.')
@secure()
@minLength(32)
param operationSigningKey string = newGuid()

@description('Log Analytics retention, days.')
@minValue(30)
param logRetentionDays int = 30

var resourceToken = toLower(uniqueString(resourceGroup().id, appName))
var storageAccountName = 'st${resourceToken}'
var cosmosAccountName = 'cosmos-${resourceToken}'
var deploymentContainerName = 'app-package-${take(toLower(appName), 40)}'
var pythonVersion = '3.11'
var messagesRoute = 'api/messages'
var alwaysReadyHttp = [
  {
    name: 'http'
    instanceCount: alwaysReadyHttpInstances
  }
]

// azd finds its environment's resources by azd-env-name and the Function App by azd-service-name
// (the service's name in azure.yaml).
var tags = empty(environmentName) ? {} : { 'azd-env-name': environmentName }
var azdServiceName = 'bot'

// Built-in role ids (Azure RBAC and Cosmos DB data plane).
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'
var cosmosDataContributorRoleId = '00000000-0000-0000-0000-000000000002'

var storageConnectionString = 'DefaultEndpointsProtocol=https;AccountName=${storage.name};AccountKey=${storage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'

// API versions are ones whose schemas the pinned azure-mgmt-* SDKs publish, so the offline check
// (tests/deploy/arm_schema.py) can hold every property against them.
resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2025-07-01' = {
  name: 'log-${appName}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${appName}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    // Entra ID only: telemetry without a token is refused (the host uses the app's identity).
    DisableLocalAuth: true
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // AzureWebJobsStorage is a connection string (see the header), so shared keys stay on.
    allowSharedKeyAccess: true
  }

  resource blobServices 'blobServices' = {
    name: 'default'

    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }

  resource queueServices 'queueServices' = {
    name: 'default'

    resource operationsQueue 'queues' = {
      name: operationsQueueName
    }

    // The host moves a message here after host.json's maxDequeueCount failed attempts.
    resource operationsPoisonQueue 'queues' = {
      name: '${operationsQueueName}-poison'
    }

    resource externalEventsQueue 'queues' = {
      name: externalEventsQueueName
    }

    resource externalEventsPoisonQueue 'queues' = {
      name: '${externalEventsQueueName}-poison'
    }
  }

  resource tableServices 'tableServices' = {
    name: 'default'

    resource transcriptTable 'tables' = {
      name: transcriptTableName
    }
  }
}

resource botIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${appName}-bot'
  location: location
  tags: tags
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${appName}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: union(tags, { 'azd-service-name': azdServiceName })
  kind: 'functionapp,linux'
  identity: {
    // System-assigned: Cosmos DB data plane and the deployment package (DefaultAzureCredential
    // picks it without any client id setting). User-assigned: the bot's own identity.
    type: 'SystemAssigned, UserAssigned'
    userAssignedIdentities: {
      '${botIdentity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReadyHttpInstances > 0 ? alwaysReadyHttp : []
      }
      // Takes the place of FUNCTIONS_WORKER_RUNTIME=python on Flex Consumption.
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

resource deploymentStorageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, storageBlobDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// The host's telemetry (Application Insights has local authentication off).
resource monitoringRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionApp.id, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: cosmosAccountName
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: [
      {
        name: 'EnableServerless'
      }
    ]
    // Entra ID only: the app uses its managed identity (CosmosDbAuthKey is empty).
    disableLocalAuth: true
    minimalTlsVersion: 'Tls12'
  }

  resource database 'sqlDatabases' = {
    name: cosmosDatabaseName
    properties: {
      resource: {
        id: cosmosDatabaseName
      }
    }

    resource conversationContainer 'containers' = {
      name: conversationContainerName
      properties: {
        resource: {
          id: conversationContainerName
          partitionKey: {
            paths: [
              '/id'
            ]
            kind: 'Hash'
          }
          defaultTtl: cosmosTimeToLiveSeconds
          // As services/cosmos.py CONVERSATION_INDEXING_POLICY: only what the sweeper filters on.
          indexingPolicy: {
            indexingMode: 'consistent'
            includedPaths: [
              {
                path: '/sweepAt/?'
              }
            ]
            excludedPaths: [
              {
                path: '/*'
              }
            ]
          }
        }
      }
    }

    resource userContainer 'containers' = {
      name: userContainerName
      properties: {
        resource: {
          id: userContainerName
          partitionKey: {
            paths: [
              '/id'
            ]
            kind: 'Hash'
          }
          // No defaultTtl: user state does not expire. As USER_INDEXING_POLICY: nothing indexed.
          indexingPolicy: {
            indexingMode: 'consistent'
            includedPaths: []
            excludedPaths: [
              {
                path: '/*'
              }
            ]
          }
        }
      }
    }

    resource referenceContainer 'containers' = {
      name: referenceContainerName
      properties: {
        resource: {
          id: referenceContainerName
          partitionKey: {
            paths: [
              '/id'
            ]
            kind: 'Hash'
          }
          // -1: only documents carrying their own ttl expire (a conversation's reference does; a
          // user's subscriptions do not). As REFERENCE_INDEXING_POLICY: only the topics are indexed.
          defaultTtl: -1
          indexingPolicy: {
            indexingMode: 'consistent'
            includedPaths: [
              {
                path: '/topics/[]/?'
              }
            ]
            excludedPaths: [
              {
                path: '/*'
              }
            ]
          }
        }
      }
    }
  }
}

resource cosmosDataRole 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: cosmos
  name: guid(cosmos.id, functionApp.id, cosmosDataContributorRoleId)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributorRoleId}'
    principalId: functionApp.identity.principalId
    scope: cosmos.id
  }
}

resource bot 'Microsoft.BotService/botServices@2022-09-15' = {
  name: appName
  location: 'global'
  tags: tags
  kind: 'azurebot'
  sku: {
    name: botSku
  }
  properties: {
    displayName: botDisplayName
    endpoint: 'https://${functionApp.properties.defaultHostName}/${messagesRoute}'
    msaAppType: 'UserAssignedMSI'
    msaAppId: botIdentity.properties.clientId
    msaAppTenantId: botIdentity.properties.tenantId
    msaAppMSIResourceId: botIdentity.id
  }
}

resource directLine 'Microsoft.BotService/botServices/channels@2022-09-15' = {
  parent: bot
  name: 'DirectLineChannel'
  location: 'global'
  properties: {
    channelName: 'DirectLineChannel'
    properties: {
      sites: [
        {
          siteName: 'Default Site'
          isEnabled: true
          isV1Enabled: false
          isV3Enabled: true
          isSecureSiteEnabled: false
          isBlockUserUploadEnabled: false
        }
      ]
    }
  }
}

// A separate resource, so that the bot (which needs the app's host name) and the Direct
// Line channel (whose key goes into DirectLineSecret) exist first. Every setting that
// services/settings.py reads is here, with the names of local.settings.json.sample.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage: storageConnectionString
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    // The system-assigned identity (no ClientId=...): the one holding monitoringRole.
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
    // The Python worker configures Azure Monitor (OpenTelemetry) before it imports the app, so the
    // host's invocation spans and the app's (services/telemetry.py) share a trace; host.json sets the
    // host's telemetryMode to match. Every trace kept whole: the distro's default keeps 5 a second,
    // deciding again at each hop, which tears a long operation's trace apart.
    PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
    OTEL_TRACES_SAMPLER: 'microsoft.fixed_percentage'
    OTEL_TRACES_SAMPLER_ARG: '1.0'
    MicrosoftAppType: 'UserAssignedMSI'
    MicrosoftAppId: botIdentity.properties.clientId
    MicrosoftAppPassword: ''
    MicrosoftAppTenantId: botIdentity.properties.tenantId
    ExpireAfterSeconds: string(expireAfterSeconds)
    CosmosDbEndpoint: cosmos.properties.documentEndpoint
    CosmosDbAuthKey: ''
    CosmosDbDatabaseId: cosmosDatabaseName
    CosmosDbConversationStateContainerId: conversationContainerName
    CosmosDbUserStateContainerId: userContainerName
    CosmosDbTimeToLive: string(cosmosTimeToLiveSeconds)
    OperationsQueueName: operationsQueueName
    OperationTimeoutSeconds: string(operationTimeoutSeconds)
    ProgressIntervalSeconds: '5'
    DirectLineEndpoint: directLineEndpoint
    DirectLineSecret: directLine.listChannelWithKeys().properties.properties.sites[0].key
    OperationSigningKey: operationSigningKey
    SweepSchedule: sweepSchedule
    ExpiryNoticeEnabled: expiryNoticeEnabled ? 'true' : 'false'
    ExpiryNoticeText: expiryNoticeText
    TranscriptsEnabled: transcriptsEnabled ? 'true' : 'false'
    TranscriptTableName: transcriptTableName
    TranscriptRetentionDays: string(transcriptRetentionDays)
    TranscriptRedactUserText: transcriptRedactUserText ? 'true' : 'false'
    HandoffTimeoutSeconds: string(handoffTimeoutSeconds)
    HandoffAfterMisunderstandings: string(handoffAfterMisunderstandings)
    CosmosDbReferenceContainerId: referenceContainerName
    ExternalEventsQueueName: externalEventsQueueName
    NotificationsPerSecond: notificationsPerSecond
    HealthCacheSeconds: '5'
  }
  dependsOn: [
    deploymentStorageRole
    cosmosDataRole
    monitoringRole
  ]
}

// Names and addresses only: no key, secret or connection string.
output functionAppName string = functionApp.name
output functionAppHostName string = functionApp.properties.defaultHostName
output messagingEndpoint string = bot.properties.endpoint
output botName string = bot.name
output botAppId string = botIdentity.properties.clientId
output cosmosEndpoint string = cosmos.properties.documentEndpoint
output storageAccountName string = storage.name
output applicationInsightsName string = appInsights.name
